"""Tests of check_layers.py on small toy crates (run: python3 -m pytest tools/tests
or python3 tools/tests/test_check_layers.py)."""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "check_layers.py")


def run(files, layers):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        for rel, text in files.items():
            path = os.path.join(src, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
        lp = os.path.join(d, "layers.txt")
        with open(lp, "w") as fh:
            fh.write(layers)
        r = subprocess.run(
            [sys.executable, SCRIPT, src, "--layers", lp], capture_output=True, text=True
        )
        return r.returncode, r.stdout


LAYERS = "low: a\nmid: b\nhigh: c\n"


def test_clean_graph_passes():
    rc, out = run(
        {"lib.rs": "pub mod a; pub mod b; pub mod c;",
         "a.rs": "pub struct A;",
         "b.rs": "use crate::a::A;",
         "c/mod.rs": "use crate::{a::A, b};\n// crate::c is fine in a comment: use crate::z;"},
        LAYERS,
    )
    assert rc == 0, out
    assert "0 cycles, 0 upward: OK" in out


def test_cycle_fails():
    rc, out = run(
        {"a.rs": "use crate::b::B;", "b.rs": "use crate::c::C;", "c.rs": "pub fn f() { crate::a::g() }"},
        LAYERS,
    )
    assert rc == 1, out
    assert "CYCLE among modules: a b c" in out


def test_cycle_through_group_import_and_macro_fails():
    rc, out = run(
        {"lib.rs": "pub use b::Thing;",
         "a.rs": "#[macro_export]\nmacro_rules! m { () => {} }\nuse crate::Thing;",
         "b.rs": "pub struct Thing; crate::m!();",
         "c.rs": ""},
        LAYERS,
    )
    assert rc == 1, out
    assert "CYCLE among modules: a b" in out


def test_two_upward_imports_fail_one_passes():
    files = {"a.rs": "use crate::c::C;", "b.rs": "", "c.rs": ""}
    rc, out = run(files, LAYERS)
    assert rc == 0, out
    assert "1 upward" in out
    files["b.rs"] = "use crate::{c::D};"
    rc, out = run(files, LAYERS)
    assert rc == 1, out
    assert "2 imports from a lower layer" in out


def test_module_missing_from_layers_fails():
    rc, out = run({"a.rs": "use crate::d::D;", "d.rs": ""}, LAYERS)
    assert rc == 1, out
    assert "missing from the layer table: d" in out


GATED = "low: a\nmid: b\ntop@extra: c\n"


def test_feature_gated_layer_passes_when_declared_behind_its_cfg():
    rc, out = run(
        {"lib.rs": "pub mod a;\npub mod b;\n#[cfg(feature = \"extra\")]\npub mod c;",
         "a.rs": "", "b.rs": "use crate::a::A;", "c/mod.rs": "use crate::b::B;"},
        GATED,
    )
    assert rc == 0, out
    assert "0 upward: OK" in out


def test_feature_gated_module_declared_without_cfg_fails():
    rc, out = run(
        {"lib.rs": "pub mod a;\npub mod b;\npub mod c;", "a.rs": "", "b.rs": "", "c.rs": "use crate::b::B;"},
        GATED,
    )
    assert rc == 1, out
    assert 'module c is declared in lib.rs without #[cfg(feature = "extra")]' in out


def test_import_into_a_feature_gated_layer_fails():
    # One upward import is allowed, but not into a layer behind a feature.
    rc, out = run(
        {"lib.rs": "pub mod a;\npub mod b;\n#[cfg(feature = \"extra\")]\npub mod c;",
         "a.rs": "", "b.rs": "use crate::c::C;", "c.rs": ""},
        GATED,
    )
    assert rc == 1, out
    assert "b imports c, which is compiled only with feature 'extra'" in out


if __name__ == "__main__":
    for name, f in sorted(globals().items()):
        if name.startswith("test_"):
            f()
            print("ok", name)
