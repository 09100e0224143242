"""The explorer's tabs: a module per tab (its layout, events and handlers together) and ``common``, what
they share."""
