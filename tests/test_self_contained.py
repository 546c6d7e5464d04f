"""The repository must stand on its own: no notebook, module, config, script, benchmark or README may point a reader
at files that live outside it (notes kept beside a checkout, a folder above the repository, a machine's absolute
paths). A fact is stated where it is used, with its evidence: a number and how it was measured, or a paper and its
section. The checks are generic and name no outside file: a document (.md, .pdf) the repository does not hold, a
relative path that climbs out of it or leads nowhere, a section number whose document the line does not name, an
absolute path of a user's or a work machine's folder."""
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()
TEXT_SUFFIXES = {'.ipynb', '.py', '.md', '.yaml', '.yml', '.sh', '.ini', '.toml', '.cfg', '.txt', '.json', ''}

# Each pattern names a place outside the repository. They are anchored so that ordinary text does not match:
# `README.md`, a repo path such as `docs/api/index.html`, or "the paper, §3.3" are fine.
PATTERNS = {
    'document the repository does not hold': re.compile(r'(?<![\w/.-])(?:[\w.-]+/)*[\w-]+\.(?:md|pdf)\b'),
    'relative path that leaves the repository or leads nowhere': re.compile(r'(?<![\w.])(?:\.\./+)+[\w.-]+'),
    'section number of a document the line does not name': re.compile(r'§\s?\d+(?:\.\d+)*'),
    "absolute path of a user's or a work machine's folder": re.compile(r'(?<![\w.])/(?:home|Users|root|work|tmp/bash_jobs)[\w.$-]*/'),
}
NAMED_SOURCE = re.compile(r'\bpaper\b|\barXiv\b', re.I)       # a section number must say whose section it is


def _repo_files() -> list[Path]:
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / f for f in out.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):           # not a git checkout: walk the usual folders
        files = [p for d in ('nbs', 'flash_dmd', 'tests', 'benchmarks', 'scaled_runs', '.ci') for p in (ROOT / d).rglob('*')]
        files += [ROOT / f for f in ('README.md', 'settings.ini', 'setup.py', 'Makefile')]
    return [f for f in files if f.is_file() and f.resolve() != SELF and f.suffix in TEXT_SUFFIXES]


def _lines(path: Path):
    "(where, line) pairs: a notebook's cell sources and text outputs, any other file's lines."
    try: text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError: return
    if path.suffix != '.ipynb':
        for i, line in enumerate(text.splitlines(), 1): yield f'{path.relative_to(ROOT)}:{i}', line
        return
    for k, cell in enumerate(json.loads(text)['cells']):
        chunks = [''.join(cell.get('source', []))]
        for o in cell.get('outputs', []):
            chunks.append(''.join(o.get('text', [])))
            chunks.append(''.join(o.get('data', {}).get('text/plain', [])))
        for line in '\n'.join(chunks).splitlines(): yield f'{path.relative_to(ROOT)} cell {k}', line


_REPO_NAMES: set[str] = set()
def _exists_in_repo(name: str) -> bool:
    if not _REPO_NAMES: _REPO_NAMES.update(p.name for p in _repo_files())
    return name in _REPO_NAMES


def _inside(folder: Path, rel: str) -> bool:
    "Whether relative path `rel`, read from `folder`, names something that exists inside the repository."
    target = (folder / re.sub(r'/+', '/', rel)).resolve()
    return target.is_relative_to(ROOT) and target.exists()


def offences(where: str, line: str, folder: Path = ROOT) -> list[str]:
    "What in `line` (of a file in `folder`) points outside the repository."
    found = []
    for what, pat in PATTERNS.items():
        for m in pat.finditer(line):
            doc = m.group(0)
            if what.startswith('document') and (_inside(folder, doc) or _inside(ROOT, doc) if '/' in doc else _exists_in_repo(doc)):
                continue                                                                   # a file the repo does hold
            if what.startswith('relative path') and _inside(folder, m.group(0)): continue
            if what.startswith('section') and NAMED_SOURCE.search(line): continue
            found.append(f'{where}: {what} {m.group(0)!r} in: {line.strip()[:160]}')
    return found


def test_patterns_are_precise():
    bad = ['see notes.md §4', '(`notes/recipe.md` §1.7)', '# recipe (../notes/recipe.md §3)', '../outside',
           'see `notes/setup.pdf`', 'PLAN.md §3', 'HANDBOOK.md', 'as §4 records', '/work/main/.venv/bin/python',
           '/home/ana/flash_dmd/nbs', 'the §1.0 preliminaries']
    good = ['see README.md', 'the paper, §3.3', 'DMD2 (arXiv 2405.14867), §4.2', 'docs/api/index.html', 'nbs/index.ipynb',
            'a teacher/student pair', 'x / work / 2', 'environment variables', 'the method. md', '/usr/lib/python3']
    for s in bad: assert offences('example', s), s
    for s in good: assert not offences('example', s), s
    # a relative path is read from its own file's folder: the notebooks reach the benchmarks with ../
    assert not offences('example', "Path('../benchmarks/results')", ROOT / 'nbs')
    assert offences('example', "Path('../nowhere/results')", ROOT / 'nbs') and offences('example', '../../elsewhere', ROOT / 'nbs')


def test_no_paths_outside_the_repository():
    files = _repo_files()
    assert any(f.suffix == '.ipynb' for f in files) and any(f.name == 'README.md' for f in files)
    found = [o for f in files for where, line in _lines(f) for o in offences(where, line, f.parent)]
    if found: pytest.fail('state the fact and its evidence instead of pointing outside the repository:\n' + '\n'.join(found))
