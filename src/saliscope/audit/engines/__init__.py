"""Where an audit's (or a folder explanation's) batches run: ``"local"`` (this process) or ``"ray"`` (a Ray
cluster). Every engine runs the same per-batch step and merges the same statistics; an engine only decides
where batches run and how their results come home. Ray itself is imported only when the Ray engine runs.
"""

from .keyed import InOrder
from .options import ENGINES, INSTALL_RAY, Engine, EngineError, RayOptions, check_engine, require_ray

__all__ = ["ENGINES", "INSTALL_RAY", "Engine", "EngineError", "InOrder", "RayOptions", "check_engine", "require_ray"]
