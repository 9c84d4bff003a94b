"""No import cycles among appliance, pipeline and ui: neither at import time nor through lazy imports inside
functions (scripts/import_cycles.py reads the source)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from import_cycles import cycles  # noqa: E402


def test_no_import_cycles_at_import_time():
    assert cycles(module_level=True) == []


def test_no_import_cycles_through_lazy_imports():
    assert cycles(module_level=False) == []
