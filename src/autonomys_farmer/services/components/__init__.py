"""The seed's cluster components, one module each (controller, caches, plot server and client, proof server),
and the Component base they share."""
