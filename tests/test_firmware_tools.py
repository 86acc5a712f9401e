"""Fast checks of the firmware plumbing (no TFLM build): TFLM_ROOT, the op resolver table, the export
README's build notes, the generated firmware files, boards as constraints."""
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nachos_tf import boards
from nachos_tf.cli import main
from nachos_tf.errors import ConstraintError, ExportError
from tflite_export import c_sources, firmware_files, tflm_tree
from tflite_export.tflm_tree import FirmwareError

SHARED_TFLM = Path(__file__).resolve().parents[2] / "shared" / "third_party" / "tflite-micro"


def _tflm_root():
    root = os.environ.get("TFLM_ROOT")
    if not root:
        pytest.skip("TFLM_ROOT is not set (.ci/run sets it to ../shared/third_party/tflite-micro)")
    return Path(root)


# ----------------------------------------------------------------------------- TFLM_ROOT

def test_tflm_root_unset_is_one_typed_line(monkeypatch):
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    with pytest.raises(FirmwareError, match="TFLM_ROOT is not set") as e:
        tflm_tree.find_tflm_root()
    assert "\n" not in str(e.value) and isinstance(e.value, ExportError)
    assert tflm_tree.find_tflm_root(required=False) is None


def test_tflm_root_not_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path))
    with pytest.raises(FirmwareError, match="not a tflite-micro checkout"):
        tflm_tree.find_tflm_root()
    with pytest.raises(FirmwareError, match="not a tflite-micro checkout"):
        c_sources.resolver_method("CONV_2D")      # set but wrong: no silent fall-back at export time


def test_cli_firmware_without_tflm_root(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    (tmp_path / "x").mkdir()
    res = CliRunner().invoke(main, ["firmware", str(tmp_path / "x"), "--target", "cortex-m4"])
    assert res.exit_code != 0
    # the export folder is checked first (no manifest here), then TFLM_ROOT: one line either way
    assert res.output.count("error:") == 1 and len(res.output.strip().splitlines()) == 1


def test_cache_folder_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tflm_tree.cache_root() == tmp_path / "nachos-tf" / "tflm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tflm_tree.cache_root() == Path(os.path.expanduser("~")) / ".cache" / "nachos-tf" / "tflm"


def test_make_args_per_target():
    assert tflm_tree.make_args("host", "reference") == []
    assert tflm_tree.make_args("host", "cmsis-nn") == ["OPTIMIZED_KERNEL_DIR=cmsis_nn"]
    if shutil.which("arm-none-eabi-gcc"):
        a = tflm_tree.make_args("cortex-m4", "cmsis-nn")
        assert a[:2] == ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp"] and a[-1] == "OPTIMIZED_KERNEL_DIR=cmsis_nn"
        assert a[2].startswith("TARGET_TOOLCHAIN_ROOT=/") and a[2].endswith("/")   # never TFLM's download
    with pytest.raises(FirmwareError, match="unknown target"):
        tflm_tree.make_args("cortex-m0", "reference")
    with pytest.raises(FirmwareError, match="unknown kernels"):
        tflm_tree.make_args("host", "xtensa")


# ----------------------------------------------------------------------------- op resolver (finding 4)

def test_resolver_names_of_the_issue():
    assert c_sources.resolver_method("CUMSUM") == "AddCumSum"
    assert c_sources.resolver_method("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"
    assert c_sources.resolver_method("CONV_2D") == "AddConv2D"
    assert c_sources.resolver_method("SPACE_TO_BATCH_ND") == "AddSpaceToBatchNd"


def test_an_op_tflm_lacks_is_an_export_error(monkeypatch):
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    for op in ("TOPK_V2", "NON_MAX_SUPPRESSION_V5", "CUSTOM:Foo", "conv"):
        with pytest.raises(ExportError):
            c_sources.resolver_method(op)


def test_resolver_table_matches_tflm_header():
    root = _tflm_root()
    header = tflm_tree.resolver_methods(root)
    assert header == tflm_tree.RESOLVER_METHODS          # the pinned table is TFLM's, name for name
    text = (root / tflm_tree.RESOLVER_HEADER).read_text()
    for op, method in header.items():                    # independent check: the method exists and
        body = text.split(f"TfLiteStatus {method}(", 1)  # registers that very op
        assert len(body) == 2, method
        assert f"BuiltinOperator_{op}," in body[1].split("TfLiteStatus", 1)[0].replace("\n", "").replace(" ", "")
    assert "TOPK_V2" not in header


# ----------------------------------------------------------------------------- README and flags (1, 2, 3, 5)

def test_export_readme_says_how_to_compile():
    man = {"rule": "max_softmax", "arena_bytes": 1000, "exit_macs": [1, 2],
           "stages": [{"tflite": "stage0.tflite", "symbol": "s0", "bytes": 10, "arena_bytes": 5, "macs": 1}]}
    text = c_sources.readme_text(man)
    assert "-std=c++17" in text and "C++11 or newer" not in text
    assert "-DTF_LITE_STATIC_MEMORY" in text
    assert "tensorflow/lite/micro/tools/make/downloads/flatbuffers/include" in text
    assert "__libc_init_array" in text and "__dso_handle" in text
    assert "nachos-tf firmware" in text


def test_cortex_m4_size_build_uses_cxx17(tmp_path):
    if not shutil.which("arm-none-eabi-g++"):
        pytest.skip("arm-none-eabi-g++ not installed (Debian gcc-arm-none-eabi)")
    from tflite_export.c_export import cortex_m4_size

    (tmp_path / "nachos_model_data.cc").write_text("alignas(16) extern const unsigned char m[] = {1, 2, 3, 4};\n")
    (tmp_path / "nachos_decision.cc").write_text("#include <type_traits>\n"
                                                 "static_assert(std::is_integral_v<int>);\nint f() { return 1; }\n")
    res = cortex_m4_size(tmp_path)                        # is_integral_v: C++17 only
    assert "-std=c++17" in res["flags"]


def test_linker_scripts_follow_the_qemu_memory_maps():
    for target, m in firmware_files.MACHINES.items():
        ld = firmware_files.linker_script(m, 16384, 8192)
        assert f"ORIGIN = 0x{m.flash_origin:08X}" in ld and f"ORIGIN = 0x{m.ram_origin:08X}" in ld
        assert "KEEP(*(.init_array*))" in ld and "__StackTop" in ld
    assert "VECT (rx)  : ORIGIN = 0x00000000" in firmware_files.linker_script(firmware_files.MACHINES["cortex-m55"],
                                                                             1024, 1024)
    assert "__libc_init_array" in firmware_files.STARTUP_C and "__dso_handle" in firmware_files.STARTUP_C


# ----------------------------------------------------------------------------- boards (item 5)

def test_footprints_were_measured():
    fp = boards.runtime_footprint()
    assert "benchmarks/firmware.py" in fp["source"]
    for b in boards.BOARDS.values():
        f = fp["footprints"][f"{b.target}-{b.kernels}"]
        assert 50_000 < f["flash_bytes"] < 1_000_000 and 1_000 < f["ram_bytes"] < 200_000
        assert f["flash_bytes"] == f["firmware_flash_bytes"] - f["model_bytes"]


def test_board_limits_are_board_minus_runtime():
    fp = boards.runtime_footprint()["footprints"]
    for name, b in boards.BOARDS.items():
        lim = boards.board_limits(name)
        f = fp[f"{b.target}-{b.kernels}"]
        assert lim["max_flash"] == b.flash_bytes - f["flash_bytes"]
        assert lim["max_ram"] == b.ram_bytes - f["ram_bytes"]
    small = boards.board_limits("stm32l432")
    assert small["max_flash"] < 256 * 1024 and small["max_ram"] < 64 * 1024
    with pytest.raises(ConstraintError, match="unknown board"):
        boards.board("esp32")


def test_board_constraints_take_the_tighter_bound():
    lim = boards.board_limits("nrf52840")
    f, r, line = boards.board_constraints("nrf52840")
    assert (f, r) == (lim["max_flash"], lim["max_ram"]) and "nrf52840" in line
    f, r, _ = boards.board_constraints("nrf52840", max_flash=1000, max_ram=10 ** 9)
    assert (f, r) == (1000, lim["max_ram"])


def test_check_fit():
    lim = boards.board_limits("stm32l432")
    ok, msg = boards.check_fit("stm32l432", lim["max_flash"], lim["max_ram"])
    assert ok and "fits" in msg
    ok, msg = boards.check_fit("stm32l432", lim["max_flash"] + 1, 10)
    assert not ok and "does NOT fit" in msg


def test_cli_search_target_sets_the_constraints(monkeypatch):
    """--target reaches Constraints as the board's max_flash / max_ram (the search itself is not run)."""
    import nachos_tf.nas as nas

    seen = {}

    class Stop(Exception):
        pass

    def fake_constraints(*a, **k):
        seen["args"] = a
        raise Stop()

    monkeypatch.setattr(nas, "Constraints", fake_constraints)
    res = CliRunner().invoke(main, ["search", "--min-accuracy", "0.8", "--max-macs", "1M", "--out", "/tmp/x-never",
                                    "--target", "stm32l432"])
    assert isinstance(res.exception, Stop), res.output
    lim = boards.board_limits("stm32l432")
    assert seen["args"][2:] == (lim["max_flash"], lim["max_ram"])


def test_export_fit_of_a_manifest():
    """`nachos-tf export --target`: the stage files' bytes and the export's arena against the board."""
    lim = boards.board_limits("nrf52840")
    man = {"arena_bytes": lim["max_ram"], "stages": [{"bytes": lim["max_flash"] - 100}, {"bytes": 100}]}
    assert boards.check_manifest_fit("nrf52840", man)[0]
    man["arena_bytes"] += 1
    ok, msg = boards.check_manifest_fit("nrf52840", man)
    assert not ok and f"arena {lim['max_ram'] + 1:,} B" in msg


def test_cached_library_found_whatever_the_spelling_of_the_checkout_path(monkeypatch, tmp_path):
    """A checkout named through '..' or a symlink is the same checkout: its cached build is used, not rebuilt
    (two clones of nachos-tf with ../shared beside them used to rebuild each other's library)."""
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tree = tmp_path / "shared" / "tflite-micro"
    tree.mkdir(parents=True)
    (tree / "Makefile").write_text("# not a real tree: nothing may be built here\n")
    folder = tflm_tree.cache_root() / tflm_tree.tree_key(tree.resolve()) / "host-reference"
    folder.mkdir(parents=True)
    (folder / "libtensorflow-microlite.a").write_bytes(b"!<arch>\n")
    lib = tflm_tree.Library("host", "reference", tflm_tree.tree_key(tree.resolve()), str(tree.resolve()), str(folder),
                            str(folder / "libtensorflow-microlite.a"), [], {}, 1.0)
    (folder / tflm_tree.LIBRARY_JSON).write_text(json.dumps(lib.to_dict()))
    (tmp_path / "clone").mkdir()
    (tmp_path / "link").symlink_to(tree)
    for spelling in (tmp_path / "clone" / ".." / "shared" / "tflite-micro", tmp_path / "link"):
        got = tflm_tree.build_library("host", "reference", root=spelling)
        assert got.cached and got.lib == lib.lib and got.root == str(tree.resolve())


def test_cached_library_found_from_a_copy_of_the_same_tree_elsewhere(monkeypatch, tmp_path):
    """The cache is named by the tree's content: a build recorded from one copy (CI's /check/... path, a checkout
    moved or deleted since) serves another copy with the same files, with `root` pointing at the copy in use (the
    firmware build takes TFLM's headers from there). It used to be rebuilt (about 15 minutes for the Cortex-M4
    library) whenever the recorded path differed. A record of another tree in the folder is not trusted."""
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tmp_path / "a" / "tflite-micro"
    first.mkdir(parents=True)
    (first / "Makefile").write_text("# not a real tree: nothing may be built here\n")
    (first / "kernel.cc").write_text("int f() { return 1; }\n")
    key = tflm_tree.tree_key(first.resolve())
    folder = tflm_tree.cache_root() / key / "cortex-m4-cmsis-nn"
    folder.mkdir(parents=True)
    (folder / "libtensorflow-microlite.a").write_bytes(b"!<arch>\n")
    lib = tflm_tree.Library("cortex-m4", "cmsis-nn", key, str(first.resolve()), str(folder),
                            str(folder / "libtensorflow-microlite.a"), [], {"CXX": "g++"}, 1.0)
    (folder / tflm_tree.LIBRARY_JSON).write_text(json.dumps(lib.to_dict()))
    copy = tmp_path / "b" / "tflite-micro"
    shutil.copytree(first, copy)
    shutil.rmtree(first)                              # the recorded checkout is gone
    assert tflm_tree.tree_key(copy.resolve()) == key
    got = tflm_tree.build_library("cortex-m4", "cmsis-nn", root=copy)
    assert got.cached and got.lib == lib.lib and got.root == str(copy.resolve()) and got.vars == lib.vars
    (folder / tflm_tree.LIBRARY_JSON).write_text(json.dumps(dict(lib.to_dict(), tree="tree-000000000000")))
    with pytest.raises(FirmwareError):               # not this folder's tree: built (and fails in this fake tree)
        tflm_tree.build_library("cortex-m4", "cmsis-nn", root=copy)
