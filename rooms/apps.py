from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        from realtime import on_shutdown
        from rooms import presence, signals  # noqa: F401  (signals: the access re-checks)

        # A stopping process forgets its presence rows once its sockets had their grace.
        on_shutdown(presence.leave_server)
