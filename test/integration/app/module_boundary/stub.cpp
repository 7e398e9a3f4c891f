// Never compiled: the boundary check runs when the project is configured.
