"""Quick start: sample an EENN, train it with the NACHOS objective, calibrate its exits, read the cost.

Runs on real Fashion-MNIST (Debian package dataset-fashion-mnist) in about a minute on 2 CPU cores:
    .venv/bin/python examples/quickstart.py
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ logs off (nachos_tf does the same)

import nachos_tf as nt  # noqa: E402

data = nt.data.load("fashion_mnist").subset(train=10000, val=2000, test=2000, seed=0)
space = nt.SearchSpace.mcu(input_shape=data.input_shape, num_classes=data.num_classes)
model = nt.build_eenn(space, space.sample(seed=0))          # a plain keras.Model, one output per exit
report = nt.profile_macs(model)
print(report.table())

budget = 0.6 * report.total                                  # expected-MAC budget: 60 % of the full network
nt.train_eenn(model, data, loss=nt.LossConfig.nachos(budget), epochs=2, head_epochs=2, seed=0)

val_probs, val_conf = nt.predict_exits(model, data.x_val)
cal = nt.calibrate(val_probs, data.y_val, report.exit_macs, rule="confidence", confidences=val_conf,
                   max_macs=budget)                            # thresholds chosen on validation ...
test_probs, test_conf = nt.predict_exits(model, data.x_test)
test = nt.simulate(test_probs, data.y_test, cal.thresholds, report.exit_macs, rule="confidence",
                   confidences=test_conf)                      # ... figures reported on test
print(f"thresholds {cal.thresholds}")
print(f"test accuracy {test.accuracy:.4f}, exit rates {test.exit_rates.round(3).tolist()}, "
      f"expected MACs {test.expected_macs / 1e6:.3f}M of {report.total / 1e6:.3f}M "
      f"({test.expected_macs / report.total:.0%})")
model.save("quickstart_eenn.keras")
