"""How the library is put together at run time: settings read once, clients built once."""
