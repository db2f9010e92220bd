"""The node: a set of services started in dependency order over one configuration.

``catalog`` is the fixed service table, ``service`` the base class, ``node`` runs them, ``checks``
validates a configuration (including port clashes with the host's other instances) before start.
Nothing here imports a service implementation directly; the catalog names them.
"""
