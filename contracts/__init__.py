"""contracts: typed payloads and vocabulary shared by huizhen's packages."""
