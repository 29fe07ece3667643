"""How a run is wired: one experiment definition, run in one process or on Ray, and its workdir."""
