"""Deprecated: moved to :mod:`ophclip.eval.run`; this alias keeps old imports working."""

from ophclip.eval.run import load_model, run_probe, run_zeroshot_config, write_run_record

__all__ = ["load_model", "run_probe", "run_zeroshot_config", "write_run_record"]
