"""cmp's built-in components: plugin modules registered through the same hooks as any
third party's (listed in `cmp.api.loader.BUILTIN_PLUGINS`)."""
