"""The search's progress line of one candidate says which constraints it misses and when its thresholds send
every image out before the last exit (the export then leaves the later stages out)."""
from nachos_tf.nas.pool import candidate_line
from nachos_tf.records import CandidateRecord


def _rec(thresholds, constraints, exit_macs=(1e5, 3e5, 5e5, 9e5)):
    rec = CandidateRecord.measured({"g": 1}, seed=0, accuracy=0.9, exit_rates=[0.5, 0.5, 0.0, 0.0],
                                   expected_macs=2e5, exit_macs=list(exit_macs), constraints=constraints,
                                   rule="max_softmax", thresholds=thresholds, params=10, seconds=3.0)
    rec.id = "c0007"
    return rec


def test_a_feasible_candidate_whose_exit_1_takes_every_image():
    line = candidate_line(_rec([0.7, "-inf", 0.5], {"accuracy": -0.1, "macs": -0.2}))
    assert line == ("  c0007: val acc 0.9000, E[MACs] 200k (full 900k, 4 exits, every image out by exit 1), "
                    "feasible, 0m03s")


def test_an_infeasible_candidate_names_the_constraints_it_misses():
    line = candidate_line(_rec([0.7, 0.6, 0.5], {"accuracy": -0.1, "macs": 0.3, "flash": 1.5, "ram": -0.2}))
    assert "(full 900k, 4 exits)," in line and line.endswith("infeasible (macs, flash), 0m03s")
    line = candidate_line(_rec(["-inf", 0.6, 0.5], {"accuracy": 0.1, "macs": -0.3, "flash": None}))
    assert "every image out by exit 0" in line and "infeasible (accuracy)" in line
