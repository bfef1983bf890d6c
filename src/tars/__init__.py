"""T.A.R.S. — train, evaluate and operate reinforcement-learning agents."""

from tars.version import VERSION, __version__

__all__ = ["VERSION", "__version__"]
