"""huizhen: composition root (app factory, CLI, demo) of the consultation media server."""
