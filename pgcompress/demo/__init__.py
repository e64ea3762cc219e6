"""``pgc demo``: the whole pipeline on data every Python install carries (no downloads).

    run_demo(DemoConfig(...)) -> DemoReport
"""

from pgcompress.demo.run import DemoConfig, DemoReport, run_demo

__all__ = ["DemoConfig", "DemoReport", "run_demo"]
