"""Deploy the quick-start EENN: int8 staged export, C sources, and figures measured on TFLM.

Run examples/quickstart.py first (it writes quickstart_eenn.keras), then:
    .venv/bin/python examples/deploy_quickstart.py
Prints the float figures (Keras) and the int8 figures (TFLM, stage by stage, really stopping early) on
the first 2000 Fashion-MNIST test images, at max-softmax thresholds calibrated on validation under an
expected-MAC budget of 60 % of the full network.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ logs off (nachos_tf does the same)

import nachos_tf as nt  # noqa: E402  (first: it imports TensorFlow without the start-up lines)
import keras  # noqa: E402
from tflite_export import evaluate_staged, export_eenn  # noqa: E402

N = 2000
data = nt.data.load("fashion_mnist")
model = keras.models.load_model("quickstart_eenn.keras")
report = nt.profile_macs(model)
budget = 0.6 * report.total
val_probs, _ = nt.predict_exits(model, data.x_val)
cal = nt.calibrate(val_probs, data.y_val, report.exit_macs, rule="max_softmax", max_macs=budget)
test_probs, _ = nt.predict_exits(model, data.x_test[:N])
flt = nt.simulate(test_probs, data.y_test[:N], cal.thresholds, report.exit_macs, rule="max_softmax")
print(f"float (Keras): accuracy {flt.accuracy:.4f}, exit rates {flt.exit_rates.round(4).tolist()}, "
      f"expected MACs {flt.expected_macs:,.0f}")

manifest = export_eenn(model, "deploy_quickstart", data.x_train[:256], "max_softmax", cal.thresholds,
                       report.exit_macs)
res = evaluate_staged("deploy_quickstart", data.x_test, data.y_test, limit=N)
print(f"int8 (TFLM):   accuracy {res['accuracy']:.4f}, exit rates {res['exit_rates']}, expected MACs "
      f"{res['expected_macs']:,.0f}, stage invocations {res['stage_invocations']}, "
      f"{res['ms_per_image']:.2f} ms/image")
print("stages (bytes, arena bytes, MACs of the stage, threshold, int8 threshold):")
for s in manifest["stages"]:
    print(" ", s["tflite"], s["bytes"], s["arena_bytes"], s["macs"], s["threshold"], s["threshold_int8"])
print("Cortex-M4 sizes:", json.dumps(manifest.get("cortex_m4")))
