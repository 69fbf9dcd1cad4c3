"""Where an audit's evidence comes from when dpaudit did not train the target: a model trained elsewhere
(`--target`), its outputs only (`--from-signals`), or the user's own Opacus training script (the white-box
probe). Each hands the same typed inputs to the one evaluation (dpaudit.core.plan, dpaudit.pipeline)."""
