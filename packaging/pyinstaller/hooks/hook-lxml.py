"""PyInstaller hook for lxml, replacing the contributed one that bundles every lxml submodule
(lxml.html, lxml.objectify, ...): the node parses identities with lxml.etree only, whose own hook
adds what it imports (lxml._elementpath)."""

hiddenimports = ["lxml.etree"]
