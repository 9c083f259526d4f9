"""Vision tools: ``tool(image, targets) -> Regions`` (arrives with the tools issue)."""
