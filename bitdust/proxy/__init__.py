"""Proxy routers: ``proxy-server`` relays opaque p2p sessions to nodes that cannot accept
connections; ``proxy-transport`` registers such a node with a router and publishes the router's
contact as its own."""
