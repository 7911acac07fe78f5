from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from realtime import on_shutdown

        # (signals: the access re-checks; attachments: files leave with their rows)
        from rooms import attachments, presence, signals  # noqa: F401

        # A stopping process forgets its presence rows once its sockets had their grace.
        on_shutdown(presence.leave_server)
        # SQLite drops a table's triggers when a migration remakes it: the search index's
        # are put back after every migrate (rooms/search.py).
        post_migrate.connect(_repair_search_index, sender=self)


def _repair_search_index(using: str, **kwargs: object) -> None:
    from django.db import connections

    from rooms import search

    search.ensure_sqlite_triggers(connections[using])
