"Tests of flash_dmd.evaluate on tiny models built in code (offline, CPU): metrics, FID's math, the protocol, the CLI and eval_sdxl.sh."
import json, os, subprocess, sys, types, warnings
from pathlib import Path
import numpy as np, pytest, torch
from scipy import linalg
from flash_dmd.evaluate import (as_image_batch, resize_center_crop, clip_preprocess, quantize, to_pil, image_grid, CLIP_STD,
                                HFClip, OpenClip, tiny_clip, ClipScore, PickScore, HPSv2, ImageReward, CallableMetric,
                                frechet_distance, gaussian_stats, GaussianStats, FID, tiny_features, inception_features,
                                save_stats, load_stats, read_eval_prompts, evaluate_pipeline, load_pipeline, build_metric,
                                paper_table1, table1_json, format_table, main_eval)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROMPTS = ['a red square', 'a blue circle', 'a green square', 'a yellow circle', 'a red circle']

@pytest.fixture(scope='module')
def images():
    from flash_dmd.models.sdxl import shape_images
    x, caps = shape_images(5, 32, torch.Generator().manual_seed(0))
    return (x + 1) / 2, caps

@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A tiny SDXL teacher pipeline (Euler) and its exported student (LCM, 4 steps), and a tiny CLIP, saved to disk."
    from diffusers import StableDiffusionXLPipeline, EulerDiscreteScheduler
    from flash_dmd.export import export_sdxl
    from flash_dmd.models.sdxl import tiny_sdxl
    root = tmp_path_factory.mktemp('saved')
    parts = tiny_sdxl(seed=0)
    export_sdxl(parts.unet, parts, root / 'student')
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', steps_offset=1, timestep_spacing='leading')
    StableDiffusionXLPipeline(vae=parts.vae, text_encoder=parts.text_encoders[0], text_encoder_2=parts.text_encoders[1],
                              tokenizer=parts.tokenizers[0], tokenizer_2=parts.tokenizers[1], unet=parts.unet,
                              scheduler=sched).save_pretrained(root / 'teacher')
    enc = tiny_clip(0)
    enc.model.save_pretrained(root / 'clip'); enc.tokenizer.save_pretrained(root / 'clip')
    (root / 'prompts.txt').write_text('\n'.join(PROMPTS))
    refs = root / 'refs'; refs.mkdir()
    from flash_dmd.models.sdxl import shape_images
    for i, im in enumerate(to_pil((shape_images(6, 32, torch.Generator().manual_seed(1))[0] + 1) / 2)): im.save(refs / f'{i}.png')
    (refs / 'broken.jpg').write_bytes(b'not an image')
    return root

@pytest.fixture(scope='module')
def student(saved): return load_pipeline(saved / 'student')

# --- images ----------------------------------------------------------------------------------------------------------
def test_image_inputs_and_preprocessing():
    x = torch.rand(2, 3, 20, 30, generator=torch.Generator().manual_seed(1))
    q = quantize(x)
    torch.testing.assert_close(as_image_batch(to_pil(x)), q)                                          # PIL
    torch.testing.assert_close(as_image_batch(np.stack([np.asarray(im) for im in to_pil(x)])), q)     # numpy NHWC uint8
    torch.testing.assert_close(as_image_batch(q[0]), q[:1])                                           # one [3, H, W]
    assert resize_center_crop(x, 16).shape == (2, 3, 16, 16) and torch.equal(resize_center_crop(x[..., :16, :16], 16), x[..., :16, :16])
    mixed = resize_center_crop([x[0], x[1, :, :10]], 8)
    assert mixed.shape == (2, 3, 8, 8)
    assert image_grid(x, ncols=2, pad=2).size == (62, 20) and image_grid(x).size == (62, 20)
    with pytest.raises(ValueError, match=r'\(x \+ 1\) / 2'): as_image_batch(x * 2 - 1)
    with pytest.raises(ValueError, match=r'\[N, 3, H, W\]'): as_image_batch(torch.rand(2, 4, 8, 8))

def test_clip_preprocessing_matches_transformers_on_a_photo():
    from PIL import Image
    from sklearn.datasets import load_sample_images
    from transformers import CLIPImageProcessor
    photo = Image.fromarray(load_sample_images().images[1])
    theirs = CLIPImageProcessor(size={'shortest_edge': 224}, crop_size={'height': 224, 'width': 224})(images=[photo], return_tensors='pt').pixel_values
    levels = (clip_preprocess([photo], 224) - theirs).abs() * torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255
    assert levels.mean() < 0.5 and levels.max() < 8

# --- CLIP-family metrics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('cls', [ClipScore, PickScore, HPSv2])
def test_clip_metrics_shapes_batching_determinism(cls, images):
    x, caps = images
    m = cls.tiny(batch_size=2)
    s = m(x, caps)
    assert s.shape == (5,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert torch.equal(s, m(x, caps))                                             # deterministic
    torch.testing.assert_close(s, cls.tiny(batch_size=5)(x, caps), atol=1e-5, rtol=1e-5)    # batching does not matter
    torch.testing.assert_close(s[3:4], m(x[3:4], caps[3:4]), atol=1e-5, rtol=1e-5)          # nor the other prompts
    torch.testing.assert_close(s, m(to_pil(x), caps), atol=1e-2, rtol=0)          # PIL input: the same up to 8-bit rounding
    assert not torch.equal(s, cls.tiny(seed=1)(x, caps))                          # the weights matter
    m.update(x[:2], caps[:2]); m.update(x[2:], caps[2:])
    r = m.compute()
    assert r['n'] == 5 and abs(r['mean'] - s.mean().item()) < 1e-5 and abs(r['std'] - s.double().std().item()) < 1e-5
    assert abs(r['sem'] - r['std'] / 5 ** 0.5) < 1e-9
    m.reset()
    with pytest.raises(ValueError, match='no images were scored'): m.compute()
    with pytest.raises(ValueError, match='5 images but 2 prompts'): m(x, caps[:2])

def test_clip_metric_conventions(images):
    x, caps = images
    cos = ClipScore.tiny().cosine(x, caps)
    torch.testing.assert_close(ClipScore.tiny()(x, caps), 100 * cos.clamp_min(0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ClipScore.tiny(scale=2.5)(x, caps), 2.5 * cos.clamp_min(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ClipScore.tiny(scale=1, clamp=False)(x, caps), cos, atol=1e-6, rtol=1e-5)
    p = PickScore.tiny()
    torch.testing.assert_close(p(x, caps), p.encoder.logit_scale * cos, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(HPSv2.tiny()(x, caps), cos, atol=1e-6, rtol=1e-5)
    prefixed = ClipScore.tiny(scale=1, clamp=False, prefix='A photo depicts ').cosine(x, caps)
    torch.testing.assert_close(prefixed, ClipScore.tiny().cosine(x, ['A photo depicts ' + c for c in caps]))
    assert (cos.abs() <= 1 + 1e-6).all()

def test_open_clip_style_encoder(images):
    "HPSv2's native format: an OpenCLIP-like model (encode_image/encode_text, visual.image_size) and a tokenizer callable."
    x, caps = images
    class FakeOpenClip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Linear(3 * 16 * 16, 8); self.visual.image_size = (16, 16)
            self.text = torch.nn.Embedding(256, 8); self.logit_scale = torch.nn.Parameter(torch.tensor(100.0).log())
        def encode_image(self, px): return self.visual(px.flatten(1))
        def encode_text(self, ids): return self.text(ids).mean(1)
    tok = lambda ps: torch.tensor([[min(ord(c), 255) for c in p[:77].ljust(77)] for p in ps])
    m = HPSv2(OpenClip(FakeOpenClip(), tok), batch_size=2)
    s = m(x, caps)
    assert s.shape == (5,) and (s.abs() <= 1 + 1e-6).all() and m.encoder.image_size == 16
    torch.testing.assert_close(PickScore(m.encoder)(x, caps), 100 * s, atol=1e-3, rtol=1e-4)

def test_image_reward_and_callable_metrics(images, monkeypatch):
    x, caps = images
    calls = []
    class FakeRM:
        device = 'cpu'
        def score(self, prompt, image):
            calls.append((prompt, image.size)); return float(len(prompt)) + float(np.asarray(image).mean()) / 255
    monkeypatch.setitem(sys.modules, 'ImageReward', types.SimpleNamespace(load=lambda name, device='cpu': FakeRM()))
    m = ImageReward.from_pretrained(batch_size=2)
    s = m(x, caps)
    assert calls == [(c, (32, 32)) for c in caps]
    torch.testing.assert_close(s, torch.tensor([len(c) + float(np.asarray(im).mean()) / 255 for c, im in zip(caps, to_pil(x))]))
    cm = CallableMetric('mps', lambda ims, ps: [float(len(p)) for p in ps], batch_size=3)
    assert cm.name == 'mps' and cm(x, caps).tolist() == [float(len(c)) for c in caps]

# --- FID --------------------------------------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2, a, b = rng.normal(size=6), rng.normal(size=6), rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()          # diagonal covariances
    assert abs(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) - closed) < 1e-9
    assert abs(frechet_distance(mu1[:1], a[:1], mu2[:1], b[:1]) - ((mu1[0] - mu2[0]) ** 2 + (np.sqrt(a[0]) - np.sqrt(b[0])) ** 2)) < 1e-12
    L = rng.normal(size=(6, 6)); S = L @ L.T
    for c in (0.25, 4.0, 9.0): assert abs(frechet_distance(mu1, c * S, mu1, S) - (1 - np.sqrt(c)) ** 2 * np.trace(S)) < 1e-8
    Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]                                      # a rotation leaves the distance unchanged
    assert abs(frechet_distance(Q @ mu1, Q @ np.diag(a) @ Q.T, Q @ mu2, Q @ np.diag(b) @ Q.T) - closed) < 1e-8
    M = rng.normal(size=(6, 6)); S2 = M @ M.T
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(S + S2) - 2 * np.trace(linalg.sqrtm(S @ S2)).real
    assert abs(frechet_distance(mu1, S, mu2, S2) - ref) < 1e-7
    assert abs(frechet_distance(mu1, S, mu2, S2) - frechet_distance(mu2, S2, mu1, S)) < 1e-8     # symmetric
    assert abs(frechet_distance(torch.tensor(mu1), torch.tensor(S), mu2, S2) - ref) < 1e-7      # torch inputs
    assert frechet_distance(mu1, S, mu1, S) < 1e-9
    with pytest.raises(ValueError, match='shapes do not match'): frechet_distance(mu1, S, mu2[:3], S2)

def test_frechet_distance_singular_and_sampled():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(10, 64))                                   # more features than samples: rank-deficient covariances
    d = frechet_distance(*gaussian_stats(f), *gaussian_stats(f[::-1] * 1.5 + 0.2))
    assert np.isfinite(d) and d > 0 and frechet_distance(*gaussian_stats(f), *gaussian_stats(f)) < 1e-6
    mu1, mu2, a, b = np.zeros(3), np.array([1.0, -0.5, 0.0]), np.array([1.0, 2.0, 0.5]), np.array([0.5, 1.0, 1.0])
    x = rng.normal(size=(40000, 3)) * np.sqrt(a) + mu1
    y = rng.normal(size=(40000, 3)) * np.sqrt(b) + mu2
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert abs(frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) - closed) < 0.05
    st = GaussianStats().add(x[:7]).add(x[7:100]).stats()
    np.testing.assert_allclose(st[0], gaussian_stats(x[:100])[0], atol=1e-12); np.testing.assert_allclose(st[1], gaussian_stats(x[:100])[1], atol=1e-12)
    with pytest.raises(ValueError, match='at least 2'): GaussianStats().add(x[:1]).stats()

def test_fid_metric(images, saved, tmp_path):
    x, _ = images
    fid = FID.tiny(size=16).set_reference(x)
    fid.update(x[:2]); fid.update(x[2:])
    r = fid.compute()
    assert r['value'] < 1e-6 and r['n'] == 5 and r['n_ref'] == 5
    fid.reset(); fid.update(1 - x)
    far = fid.compute()['value']
    assert far > 1e-3 and FID.tiny(size=16).set_reference(x).embed(x).shape == (5, 16)
    fid.save_reference(tmp_path / 'ref.npz')
    mu, sigma, meta = load_stats(tmp_path / 'ref.npz')
    assert meta == {'features': 'tiny:0', 'size': 16, 'n': 5} and mu.shape == (16,) and sigma.shape == (16, 16)
    again = FID.tiny(size=16).load_reference(tmp_path / 'ref.npz'); again.update(1 - x)
    assert abs(again.compute()['value'] - far) < 1e-9
    with pytest.raises(ValueError, match="features='tiny:0', size=16"): FID.tiny(size=32).load_reference(tmp_path / 'ref.npz')
    with pytest.raises(ValueError, match='no reference statistics'): FID.tiny().compute()
    with pytest.warns(UserWarning, match='skipped 1 unreadable'): folder = FID.tiny(size=32).reference_from_folder(saved / 'refs')
    assert folder.reference_meta['n'] == 6 and folder.reference_meta['skipped'] == 1
    with pytest.raises(FileNotFoundError, match='reference image folder not found'): FID.tiny().reference_from_folder(tmp_path / 'nope')

# --- missing things: clear errors ------------------------------------------------------------------------------------
def test_missing_packages_name_the_pip_command(monkeypatch):
    for mod in ('open_clip', 'ImageReward', 'pytorch_fid', 'pytorch_fid.inception'): monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match='pip install open-clip-torch'): HPSv2.from_pretrained('v2.0')
    with pytest.raises(ImportError, match='pip install open-clip-torch'): ClipScore.from_open_clip()
    with pytest.raises(ImportError, match='pip install image-reward'): ImageReward.from_pretrained()
    with pytest.raises(ImportError, match='pip install pytorch-fid'): inception_features()

def test_missing_models_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="'/no/such/pickscore'"): PickScore.from_pretrained('/no/such/pickscore')
    with pytest.raises(FileNotFoundError, match="'./missing_hps.pt'"): HPSv2.from_pretrained('./missing_hps.pt')
    with pytest.raises(FileNotFoundError, match="'/no/clip'"): FID.from_pretrained('clip:/no/clip')
    with pytest.raises(OSError, match='offline runs need it'): ClipScore.from_pretrained('nobody-here/no-such-clip-model')
    with pytest.raises(FileNotFoundError, match="'/no/such/model'"): load_pipeline('/no/such/model')
    with pytest.raises(FileNotFoundError, match='no model_index.json'): load_pipeline(tmp_path)
    with pytest.raises(ValueError, match="unknown metric 'mps'"): build_metric('mps')
    with pytest.raises(ValueError, match="use 'inception' or 'clip:"): FID.from_pretrained('swav')
    with pytest.raises(FileNotFoundError, match='prompt file not found'): read_eval_prompts(tmp_path / 'none.txt')
    with pytest.raises(ValueError, match='convert it once to JSONL'): read_eval_prompts(tmp_path / 'all_prompts.pkl')

def test_metrics_load_from_local_folders(saved, images):
    x, caps = images
    ref = tiny_clip(0)
    for m in (build_metric(f'clip_score={saved / "clip"}'), build_metric(f'pickscore={saved / "clip"}'), build_metric(f'hpsv2={saved / "clip"}')):
        torch.testing.assert_close(m(x, caps), type(m)(ref)(x, caps))
    f = build_metric(f'fid=clip:{saved / "clip"}', fid_size=32)
    assert f.features_name.startswith('clip:') and f.embed(x).shape == (5, 16)

# --- the protocol ----------------------------------------------------------------------------------------------------
def test_evaluate_pipeline_is_batch_and_neighbour_independent(student, tmp_path):
    a1 = evaluate_pipeline(student, PROMPTS[:3], [PickScore.tiny()], batch_size=1, return_images=True)
    a3 = evaluate_pipeline(student, PROMPTS[:3], [PickScore.tiny()], batch_size=3, return_images=True)
    assert (a1['images'] - a3['images']).abs().max() <= 1 / 255 + 1e-6           # float rounding may flip an 8-bit level
    assert abs(a1['metrics']['pickscore']['mean'] - a3['metrics']['pickscore']['mean']) < 1e-2
    swapped = evaluate_pipeline(student, [PROMPTS[2], PROMPTS[0]], seeds=[2, 0], batch_size=2, return_images=True)['images']
    assert (swapped[1] - a1['images'][0]).abs().max() <= 1 / 255 + 1e-6               # prompt 0 with seed 0, in another batch
    other = evaluate_pipeline(student, PROMPTS[:1], seed=7, return_images=True)['images']
    assert (other[0] - a1['images'][0]).abs().max() > 0.05                            # another seed, another image
    assert a1['nfe'] == 4 and a1['image_size'] == [32, 32] and a1['seed'] == 0

def test_evaluate_pipeline_writes_results(student, tmp_path, images):
    x, _ = images
    metrics = [ClipScore.tiny(), HPSv2.tiny(), FID.tiny(size=32).set_reference(x)]
    r = evaluate_pipeline(student, PROMPTS, metrics, tmp_path / 'ev', name='tiny', batch_size=2, grid=4, save_images=True)
    assert sorted(os.listdir(tmp_path / 'ev')) == ['grid.png', 'images', 'results.json']
    assert sorted(os.listdir(tmp_path / 'ev' / 'images')) == [f'{i:05d}.png' for i in range(5)]
    saved = json.loads((tmp_path / 'ev' / 'results.json').read_text())
    assert saved == r and saved['n'] == 5 and saved['grid_prompts'] == PROMPTS[:4] and set(saved['metrics']) == {'clip_score', 'hpsv2', 'fid'}
    assert saved['metrics']['fid']['n'] == 5 and saved['metrics']['hpsv2']['n'] == 5
    from PIL import Image
    assert Image.open(tmp_path / 'ev' / 'grid.png').size == (2 * 32 + 2, 2 * 32 + 2)
    with pytest.raises(ValueError, match='3 prompts but 2 seeds'): evaluate_pipeline(student, PROMPTS[:3], seeds=[0, 1])
    with pytest.raises(ValueError, match='unique'): evaluate_pipeline(student, PROMPTS[:1], [HPSv2.tiny(), HPSv2.tiny()])

def test_evaluate_any_callable():
    "A callable (prompts, generators) -> images: each image drawn from its prompt's generator."
    gen = lambda prompts, gens: torch.stack([torch.rand(3, 8, 8, generator=g) for g in gens])
    r = evaluate_pipeline(gen, PROMPTS, [CallableMetric('brightness', lambda ims, ps: [np.asarray(i).mean() / 255 for i in ims])],
                          seed=3, batch_size=2, return_images=True)
    torch.testing.assert_close(r['images'][4], quantize(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(7)))[0])
    assert r['nfe'] is None and abs(r['metrics']['brightness']['mean'] - r['images'].mean().item()) < 1e-5
    with pytest.raises(ValueError, match='returned 1 images for 2 prompts'): evaluate_pipeline(lambda p, g: torch.rand(1, 3, 8, 8), PROMPTS[:2], batch_size=2)
    with pytest.raises(TypeError, match='diffusers pipeline or a callable'): evaluate_pipeline(42, PROMPTS)

def test_paper_table_and_comparison():
    rows = paper_table1()
    assert [r['method'] for r in rows] == ['SDXL teacher', 'SDXL-Turbo', 'DMD2-SDXL', 'Flash-DMD TTUR1-1k', 'Flash-DMD TTUR2-8k']
    assert rows[0]['nfe'] == 100 and rows[2]['image_reward'] == 0.8748 and rows[4]['pickscore'] == 0.2327 and rows[3]['hpsv2'] == 0.2968
    res = {'model': 'student', 'n': 10, 'nfe': 4, 'metrics': {'pickscore': {'mean': 23.0, 'std': 1.0, 'sem': 0.3, 'n': 10},
                                                              'hpsv2': {'mean': 0.29, 'std': 0.01, 'sem': 0.003, 'n': 10},
                                                              'fid': {'value': 21.5, 'n': 10, 'n_ref': 10}}}
    t = table1_json([res])
    ours = t['rows'][0]
    assert ours['from'] == 'this run' and abs(ours['pickscore'] - 0.23) < 1e-12 and abs(ours['pickscore_sem'] - 0.003) < 1e-12
    assert ours['fid'] == 21.5 and ours['image_reward'] is None and len(t['rows']) == 6 and 'arXiv 2511.20549' in t['source']
    md = format_table(t)
    assert md.count('\n') == 7 and '| student | 4 | – | 0.2300 |' in md

def test_read_eval_prompts(tmp_path):
    (tmp_path / 'p.jsonl').write_text('\n'.join(json.dumps({'prompt': p}) for p in PROMPTS))
    assert read_eval_prompts(tmp_path / 'p.jsonl') == PROMPTS and read_eval_prompts(tmp_path / 'p.jsonl', 2) == PROMPTS[:2]
    with pytest.raises(ValueError, match='asked for 9 prompts'): read_eval_prompts(tmp_path / 'p.jsonl', 9)

# --- command line ----------------------------------------------------------------------------------------------------
def test_cli_run_and_table(saved, tmp_path, capsys):
    clip = saved / 'clip'
    args = ['run', '--model', str(saved / 'student'), '--name', 'student', '--prompts', str(saved / 'prompts.txt'), '--n', '3',
            '--metrics', f'pickscore={clip},fid=clip:{clip}', '--fid-size', '32', '--ref-images', str(saved / 'refs'),
            '--ref-stats', str(tmp_path / 'ref.npz'), '--quiet', '--out', str(tmp_path / 's')]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert main_eval(args) == 0
    r = json.loads((tmp_path / 's' / 'results.json').read_text())
    assert r['n'] == 3 and r['metrics']['fid']['n_ref'] == 6 and (tmp_path / 'ref.npz').exists()
    assert main_eval(args[:-1] + [str(tmp_path / 's2')]) == 0                       # the second run reads the cached statistics
    assert json.loads((tmp_path / 's2' / 'results.json').read_text())['metrics'] == r['metrics']
    capsys.readouterr()
    assert main_eval(['table', str(tmp_path / 's' / 'results.json'), '--out', str(tmp_path / 't.json')]) == 0
    assert '| student | 4 |' in capsys.readouterr().out and len(json.loads((tmp_path / 't.json').read_text())['rows']) == 6

def test_cli_setup_errors_exit_2_before_generating(saved, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ImageReward', None)
    base = ['run', '--model', str(saved / 'student'), '--prompts', str(saved / 'prompts.txt'), '--out', str(tmp_path / 'x')]
    assert main_eval(base + ['--metrics', 'image_reward']) == 2
    assert 'pip install image-reward' in capsys.readouterr().err and not (tmp_path / 'x').exists()
    assert main_eval(base + ['--metrics', f'fid=clip:{saved / "clip"}']) == 2
    assert '--ref-images' in capsys.readouterr().err
    assert main_eval(['run', '--model', '/no/model', '--prompts', str(saved / 'prompts.txt'), '--metrics', '', '--out', str(tmp_path / 'x')]) == 2
    assert "'/no/model'" in capsys.readouterr().err
    assert main_eval(['table', str(tmp_path / 'none.json'), '--out', str(tmp_path / 't.json')]) == 2

def test_eval_sdxl_script(saved, tmp_path):
    "scaled_runs/eval_sdxl.sh end to end on the tiny teacher and exported student: two runs and the Table 1 JSON."
    clip = saved / 'clip'
    env = {**os.environ, 'FLASH_DMD_BIN': str(BIN), 'TEACHER': str(saved / 'teacher'), 'STUDENT': str(saved / 'student'),
           'PROMPTS': str(saved / 'prompts.txt'), 'REF_IMAGES': str(saved / 'refs'), 'OUT': str(tmp_path / 'out'), 'N': '2',
           'METRICS': f'pickscore={clip},hpsv2={clip},clip_score={clip},fid=clip:{clip}', 'TEACHER_STEPS': '2',
           'DTYPE': 'fp32', 'DEVICE': 'cpu', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run(['bash', str(ROOT / 'scaled_runs' / 'eval_sdxl.sh'), '--fid-size', '32', '--quiet'], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((tmp_path / 'out' / 'table1.json').read_text())
    ours = [row for row in table['rows'] if row['from'] == 'this run']
    assert [(o['method'], o['nfe'], o['n']) for o in ours] == [('SDXL teacher', 4, 2), ('Flash-DMD student', 4, 2)]
    assert all(o[k] is not None for o in ours for k in ('pickscore', 'hpsv2', 'clip_score', 'fid'))
    assert (tmp_path / 'out' / 'ref_stats.npz').exists() and (tmp_path / 'out' / 'student' / 'grid.png').exists()
    bad = subprocess.run(['bash', str(ROOT / 'scaled_runs' / 'eval_sdxl.sh')], capture_output=True, text=True,
                         env={**env, 'STUDENT': ''}, timeout=60)
    assert bad.returncode != 0 and 'set STUDENT' in bad.stderr
