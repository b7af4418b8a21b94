"""kbflow's Prefect deployments (``prefect.yaml``): registering or serving them (``deploy``) and
triggering a run of one (``submit``). Installed as ``kbflow_deployments``."""
