# Sourced by the scripts here (from the repository root): sets BIN, the folder holding flash-dmd (and its python,
# torchrun, accelerate). FLASH_DMD_BIN wins; else this checkout's .venv (made by `make`); else the flash-dmd on PATH,
# for a user who installed the project into an environment of their own (conda, a venv elsewhere, a container).
if [ -n "${FLASH_DMD_BIN:-}" ]; then BIN=$FLASH_DMD_BIN
elif [ -x .venv/bin/flash-dmd ]; then BIN=.venv/bin
elif command -v flash-dmd >/dev/null 2>&1; then BIN=$(dirname "$(command -v flash-dmd)")
else
  echo "$(basename "$0"): flash-dmd not found (no .venv/bin/flash-dmd, none on PATH): install the project (pip install -e .) or set FLASH_DMD_BIN to the folder that holds flash-dmd" >&2
  exit 2
fi
if [ ! -x "$BIN/flash-dmd" ]; then echo "$(basename "$0"): FLASH_DMD_BIN=$BIN holds no flash-dmd" >&2; exit 2; fi
