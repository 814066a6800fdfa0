"""The orchestrator: accounts, workspaces, Redis ACLs, tenants, grants and mount tickets."""
