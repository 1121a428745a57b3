"""The compliance officer's console: the ``/console`` page and the aggregates it draws."""
