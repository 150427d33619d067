"""kalab.ui: the notebooks' widgets, check lines, plots and error display, no root and no lab."""
