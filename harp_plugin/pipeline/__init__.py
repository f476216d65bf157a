"""The main job (``harp-prune run``) and its configuration."""
from harp_plugin.pipeline.config import RunConfig, build_config, load_config_file
from harp_plugin.pipeline.run import RunReport, run

__all__ = ["RunConfig", "RunReport", "build_config", "load_config_file", "run"]
