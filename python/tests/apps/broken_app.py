"""An application that cannot be imported, as a broken deploy's code."""

raise ImportError("broken deploy: this module cannot be imported")
