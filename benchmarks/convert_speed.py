"""How long the int8 conversion of a searched solution takes, through Keras' SavedModel export and without it.

`tflite_export.quantize.to_int8_tflite` used `tf.lite.TFLiteConverter.from_keras_model`, which first writes
the model through Keras' SavedModel export; it now converts one concrete function of the inference call
(``keras_export=True`` keeps the old path). For every stage of the solution's staged export (split and
calibrated as `nachos-tf export` does), this converts the stage both ways in this process, one after the
other (which goes first alternates), and records the seconds of each and whether the two flatbuffers carry
the same operators, constant data and SignatureDef. Then it times the whole int8 TFLM measurement of the
final stage (`tflite_export.convert.int8_report`: conversion of every stage and the staged TFLM run on the
test split) and checks its figures against the run's pareto.json.

    .venv/bin/python benchmarks/convert_speed.py runs/demo --solution c0027 \
        --out benchmarks/results/convert_speed.json
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import (RESULTS, add_out, add_threads, environment, pin_threads, say, timed, utc_now,  # noqa: E402
                     write_json)


def content(blob: bytes) -> Dict[str, Any]:
    """What must not change between the two conversions: operators with their tensors, a digest of every
    tensor's constant data, the SignatureDef outputs and the input quantisation."""
    import numpy as np

    from tflite_export import flatbuffer as fb
    from tflite_export.stages import input_quant

    m = fb.read_model(blob)
    g = m.subgraphs[0]
    digest = hashlib.sha256()
    for t in g.tensors:
        data = m.buffers[t.buffer].data if t.buffer else None
        digest.update(b"-" if data is None else bytes(np.asarray(data, np.uint8)))
    return {"operators": [[int(m.operatorCodes[o.opcodeIndex].builtinCode), list(map(int, o.inputs)),
                           list(map(int, o.outputs))] for o in g.operators],
            "constants_sha256": digest.hexdigest(),
            "signature_outputs": [[o.signature_name, o.position, o.scale, o.zero_point, o.dtype]
                                  for o in fb.signature_outputs(blob)],
            "input_quant": list(input_quant(blob))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--solution", default="0", help="solution id (e.g. c0027) or index in pareto.json")
    add_threads(p)
    add_out(p, RESULTS / "convert_speed.json")
    a = p.parse_args(argv)
    pin_threads(a.threads)

    from tflite_export.convert import int8_report
    from tflite_export.from_run import load_solution_model, pick_solution, representative_x, run_dataset
    from tflite_export.quantize import to_int8_tflite
    from tflite_export.stages import split_stages, stage_inputs

    sol = pick_solution(a.run_dir, int(a.solution) if a.solution.isdigit() else a.solution)
    data = run_dataset(a.run_dir)
    model = load_solution_model(a.run_dir, sol)
    stages = split_stages(model)
    calib = stage_inputs(model, stages, representative_x(data.x_train))
    rows: List[Dict[str, Any]] = []
    for st, x in zip(stages, calib):
        ways = [("old", lambda: to_int8_tflite(st.model, x, keras_export=True)),
                ("new", lambda: to_int8_tflite(st.model, x))]
        if st.index % 2:           # alternate which goes first (the first conversion of a process warms up)
            ways.reverse()
        got = {}
        for name, fn in ways:
            with contextlib.redirect_stdout(io.StringIO()):        # the SavedModel export's listing
                got[name] = timed(fn)
        (old, t_old), (new, t_new) = got["old"], got["new"]
        same = content(old) == content(new)
        rows.append({"stage": st.index, "outputs": len(st.outputs), "bytes_keras_export": len(old),
                     "bytes_concrete_function": len(new), "same_content": same,
                     "seconds_keras_export": round(t_old, 2), "seconds_concrete_function": round(t_new, 2)})
        say(f"stage {st.index}: SavedModel export path {t_old:.1f} s, concrete function {t_new:.1f} s, "
            f"same operators, constants and signature: {same}")
    q, t_rep = timed(lambda: int8_report(model, data.x_train, data.x_test, data.y_test, sol.rule,
                                         sol.thresholds, sol.exit_macs))
    said = sol.int8 or {}
    agrees = bool(said) and abs(float(q["accuracy"]) - float(said.get("accuracy", -1))) < 1e-12 and \
        [int(b) for b in q["stage_bytes"]] == [int(b) for b in said.get("stage_bytes") or []]
    say(f"int8_report (conversion + TFLM on {q['n']} test images): {t_rep:.1f} s, accuracy {q['accuracy']:.4f} "
        f"({'as' if agrees else 'NOT as'} in pareto.json)")
    doc = {"benchmark": "convert_speed", "issue": 12, "finished": utc_now(), "complete": True,
           "command": " ".join(["python", "benchmarks/convert_speed.py"] + [str(v) for v in (argv or sys.argv[1:])]),
           "run": str(a.run_dir), "solution": sol.id, "threads": a.threads, "stages": rows,
           "seconds_keras_export": round(sum(r["seconds_keras_export"] for r in rows), 2),
           "seconds_concrete_function": round(sum(r["seconds_concrete_function"] for r in rows), 2),
           "all_same_content": all(r["same_content"] for r in rows),
           "int8_report": {"seconds": round(t_rep, 2), "accuracy": q["accuracy"], "n": q["n"],
                           "stage_bytes": q["stage_bytes"], "agrees_with_pareto_json": agrees},
           **environment()}
    write_json(a.out, doc)
    say(f"wrote {a.out}")
    return 0 if doc["all_same_content"] and agrees else 1


if __name__ == "__main__":
    sys.exit(main())
