"""n3seq._lazy: package attributes imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_packages_import_torch_only_when_a_name_is_used():
    code = (
        "import sys, n3seq, n3seq.audio, n3seq_image\n"
        "assert 'torch' not in sys.modules, 'importing the packages imported torch'\n"
        "n3seq_image.N3Net\n"
        "assert 'torch' in sys.modules and 'n3seq_image.n3net' in sys.modules\n"
        "assert n3seq_image.__dict__['N3Net'] is n3seq_image.n3net.N3Net  # cached\n"
        "assert 'N3Block' in dir(n3seq) and 'SpectralDenoiser' in dir(n3seq.audio)\n"
        "assert n3seq.approximate.__name__ == 'n3seq.approximate'  # submodules as attributes\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["nope", "_private"])
def test_unknown_names_raise_attribute_error(name):
    import n3seq

    with pytest.raises(AttributeError, match=f"module 'n3seq' has no attribute '{name}'"):
        getattr(n3seq, name)
