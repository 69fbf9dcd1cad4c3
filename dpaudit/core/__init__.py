"""The auditing core: numpy, scipy and scikit-learn only, never torch. Typed signals, the attack registry, ε lower
bounds and ceilings, the verdict's confidence plan and report document, measured power, scores from anyone's
model. Everything here is a pure function of arrays and counts, so `--from-signals`, `dpaudit epsilon`, `report`
and `check` run without the training stack (tests/test_layers.py proves it)."""
