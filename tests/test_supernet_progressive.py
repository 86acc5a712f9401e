"""Progressive shrinking: elastic gene groups (restricted subnet codes) and the staged schedule."""
import json
from pathlib import Path

import numpy as np
import pytest

import nachos_tf as nt
from nachos_tf.errors import SupernetError
from nachos_tf.genome import ExitGene, Genome
from nachos_tf.supernet import DEFAULT_STAGES, ELASTIC_GROUPS, ShrinkStage, Supernet, train_progressive, train_supernet
from nachos_tf.supernet.progressive import _check, load_schedule
from nachos_tf.supernet.training import SupernetTrainer, epoch_plan
from test_supernet import SHAPE, _tiny_data


@pytest.fixture(scope="module")
def sn():
    return Supernet(nt.SearchSpace.mcu(SHAPE, 4), seed=0)


def _largest_but(sn, genome, genes):
    """A genome built gene by gene: the largest subnet's values except `genes` (suffixes such as
    "_kernel", or exact names) taken from `genome`; exit configuration of `genome`, widest heads."""
    big = sn.extreme_genome(True).params
    p = {k: (genome.params[k] if any(k == g or k.endswith(g) for g in genes) else v) for k, v in big.items()}
    w = max(sn.spec.head_widths)
    return Genome.make(p, [ExitGene(e.enabled, e.head, w, e.pool) for e in genome.exits])


@pytest.mark.parametrize("groups,genes", [
    (("kernel",), ("_kernel",)),
    (("resolution", "kernel", "depth"), ("resolution", "_kernel", "_depth")),
    (("expand", "width", "stem"), ("_expand", "_width", "stem_width")),
    (("se", "act"), ("_se", "_act")),
])
def test_restrict_keeps_only_the_elastic_genes(sn, groups, genes):
    """restrict(code of g) == code of the genome made from the largest one with g's elastic genes."""
    space = sn.space
    for seed in range(12):
        g = space.sample(seed=seed)
        got = sn.spec.restrict(sn.spec.encode(g)[0], groups)
        want = sn.spec.encode(_largest_but(sn, g, genes))[0]
        np.testing.assert_array_equal(got, want)


def test_restrict_with_every_group_is_the_identity_and_with_none_the_largest(sn):
    spec = sn.spec
    rng = np.random.default_rng(3)
    big = spec.extreme_code(True)
    hb = spec.code_length - 1 - 2 * spec.n_points        # the exit configuration is always kept
    for _ in range(20):
        c = spec.random_code(rng)
        np.testing.assert_array_equal(spec.restrict(c, ELASTIC_GROUPS), c)
        r = spec.restrict(c, ())
        np.testing.assert_array_equal(np.delete(r, range(hb, hb + 2 * spec.n_points)),
                                      np.delete(big, range(hb, hb + 2 * spec.n_points)))
    with pytest.raises(SupernetError, match="unknown elastic"):
        spec.restrict(big, ("kernels",))


def test_epoch_plan_samples_only_the_elastic_genes(sn):
    spec = sn.spec
    groups = ("resolution", "kernel")
    _, codes = epoch_plan(spec, 640, 0, 0, 32, 2, groups)
    flat = codes.reshape(-1, spec.code_length)
    for c in flat:
        np.testing.assert_array_equal(spec.restrict(c, groups), c)
    varying = sorted(set(np.flatnonzero(flat.min(0) != flat.max(0))))
    hb = spec.code_length - 1 - 2 * spec.n_points
    exit_cfg = set(range(hb, hb + 2 * spec.n_points))
    assert set(varying) - exit_cfg == set(spec.elastic_positions(groups))   # each elastic gene does vary
    # the same seed and epoch give the same codes as the unrestricted plan, restricted
    _, free = epoch_plan(spec, 640, 0, 0, 32, 2)
    np.testing.assert_array_equal(codes, np.stack([[spec.restrict(c, groups) for c in s] for s in free]))


def test_the_smallest_subnet_of_a_stage_is_smallest_only_in_its_elastic_genes(sn):
    spec = sn.spec
    tr = SupernetTrainer(sn.net, "sandwich", elastic=("depth",))
    small = sn.extreme_genome(False)
    want = spec.encode(_largest_but(sn, small, ("_depth",)))[0]
    hb = spec.code_length - 1 - 2 * spec.n_points
    np.testing.assert_array_equal(np.delete(tr._smallest, range(hb, hb + 2 * spec.n_points)),
                                  np.delete(want, range(hb, hb + 2 * spec.n_points)))
    full = SupernetTrainer(sn.net, "sandwich")
    np.testing.assert_array_equal(full._smallest, spec.extreme_code(False))


def test_bad_schedules_and_groups_are_refused(sn, tmp_path):
    space, data = sn.space, _tiny_data()
    bad = [(), (ShrinkStage("a", (), 1, 1e-3), ShrinkStage("a", ("kernel",), 1, 1e-3)),
           (ShrinkStage("a/b", (), 1, 1e-3),), (ShrinkStage("a", ("kernels",), 1, 1e-3),),
           (ShrinkStage("a", (), 0, 1e-3),), (ShrinkStage("a", (), 1, 0.0),),
           (ShrinkStage("a", (), 1, 1e-3, train_limit=0),), (ShrinkStage("a", (), 1, 1e-3, train_limit=2.5),)]
    for stages in bad:
        with pytest.raises(SupernetError):
            train_progressive(space, data, tmp_path / "p", stages=stages, verbose=0)
    with pytest.raises(SupernetError, match="per stage"):
        train_progressive(space, data, tmp_path / "p", epochs=3, verbose=0)
    for elastic in ("kernel", ("kernel", "widths")):
        with pytest.raises(SupernetError):
            train_supernet(space, data, epochs=0, batch_size=16, verbose=0, elastic=elastic)
    assert not (tmp_path / "p").exists()


def test_a_bad_schedule_file_is_one_clear_error(tmp_path):
    good = {"name": "a", "elastic": [], "epochs": 1, "learning_rate": 1e-3}
    for text, match in (("nope", "schedule"), ("{}", "list of stage objects"),
                        (json.dumps([{**good, "lr": 1}]), "unknown fields \\['lr'\\]"),
                        (json.dumps([{"name": "a"}]), "stage 0"),
                        (json.dumps([{**good, "elastic": ["kernels"]}]), "unknown elastic")):
        f = tmp_path / "s.json"
        f.write_text(text)
        with pytest.raises(SupernetError, match=match):
            load_schedule(f)
    with pytest.raises(SupernetError):
        load_schedule(tmp_path / "missing.json")
    f.write_text(json.dumps([good, {**good, "name": "b", "elastic": ["kernel"], "train_limit": 64}]))
    assert load_schedule(f) == (ShrinkStage("a", (), 1, 1e-3), ShrinkStage("b", ("kernel",), 1, 1e-3, train_limit=64))


@pytest.mark.slow  # three stages, each traces the training step (minutes on 2 shared cores)
def test_progressive_stages_chain_resume_and_sort_once(sn, tmp_path):
    space, data = sn.space, _tiny_data(64)
    stages = (ShrinkStage("largest", (), 1, 2e-3),
              ShrinkStage("kernel", ("resolution", "kernel"), 1, 1e-3, train_limit=32),
              ShrinkStage("expand", ("kernel", "expand", "width"), 1, 1e-3, sort_channels=True, sort_widths=True))
    kw = dict(stages=stages, batch_size=16, n_random=1, seed=2, verbose=0, val_limit=0)
    a = train_progressive(space, data, tmp_path / "ps", **kw)
    # every stage continued the previous one: the record chains three trainings, last first
    rec, phases = a.info, []
    while rec:
        phases.append((rec["settings"].get("elastic"), [h["phase"] for h in rec["history"]]))
        rec = rec.get("init_from")
    assert phases == [(["kernel", "expand", "width"], ["sandwich"]), (["resolution", "kernel"], ["sandwich"]),
                      (None, ["largest"])]
    st = json.loads((tmp_path / "ps" / "2_expand" / "checkpoint" / "state.json").read_text())
    assert st["sorted"] is True and st["settings"]["sort_channels_first"] is True
    assert st["widths_sorted"] is True and st["settings"]["sort_widths_first"] is True
    k = json.loads((tmp_path / "ps" / "1_kernel" / "checkpoint" / "state.json").read_text())
    assert k["sorted"] is False and "widths_sorted" not in k and "sort_widths_first" not in k["settings"]
    # a stage's own train_limit replaces the run's (None: every image) for that stage only
    assert k["settings"]["train_limit"] == 32 and st["settings"]["train_limit"] is None
    # a second call trains nothing more and gives the same weights (finished stages are reloaded)
    b = train_progressive(space, data, tmp_path / "ps", **kw)
    wa, wb = a.net.numpy_weights(), b.net.numpy_weights()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert len(b.info["history"]) == 1
    loaded = Supernet.load(tmp_path / "ps", space)
    assert [s["name"] for s in loaded.info["stages"]] == ["largest", "kernel", "expand"]


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "schedules").glob("*.json")),
                         ids=lambda p: p.name)
def test_committed_schedules_are_valid_and_only_open_genes(path):
    """Every committed schedule (the script's --stages) is valid, starts with the largest subnet alone, never
    closes a gene group it opened, and ends with every group elastic; DEFAULT_STAGES likewise. A schedule that
    starts with elastic genes continues a largest-only stage (the script's --init-from): it is checked after
    DEFAULT_STAGES' first stage."""
    schedule = load_schedule(path)
    if schedule[0].elastic:
        schedule = (DEFAULT_STAGES[0],) + tuple(schedule)
    for stages in (schedule, DEFAULT_STAGES):
        _check(stages)
        assert stages[0].elastic == () and set(stages[-1].elastic) == set(ELASTIC_GROUPS)
        assert all(set(a.elastic) <= set(b.elastic) for a, b in zip(stages, stages[1:]))
        assert sum(s.sort_channels for s in stages) == 1
        first_expand = next(s for s in stages if "expand" in s.elastic)
        assert first_expand.sort_channels                # channels sorted before expansion opens
        assert sum(s.sort_widths for s in stages) <= 1   # widths sorted, if at all, once, as they open
        assert all(not s.sort_widths or s is next(t for t in stages if {"width", "stem"} & set(t.elastic))
                   for s in stages)
