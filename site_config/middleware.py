"""Our middleware, each as able to run on the event loop as in a thread.

Under Daphne, Django builds one async chain; a middleware that can only run synchronously
breaks it, and every request then crosses to a thread and back around it
(site_config/tests/test_middleware.py checks every entry of MIDDLEWARE).
"""

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.functional import SimpleLazyObject, empty
from whitenoise.middleware import WhiteNoiseMiddleware

Handler = Callable[[HttpRequest], HttpResponseBase]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (static files, compressed and cached), able to run on the event loop.

    WhiteNoise's middleware is sync only. For everything that is not a static file (every
    page and post) this one is a dictionary lookup on the loop and nothing more. A static
    file is opened in a thread, as Django reads it in one anyway; under DEBUG (files looked
    up on disk at each request) the lookup goes to a thread too.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler | AsyncHandler, *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve)(static_file, request)


class PrivatePagesMiddleware:
    """What a signed-in person is shown is for them alone, and is not kept.

    A response to an authenticated request that sets no Cache-Control of its own gets
    `private, no-store`: `private` so that no shared cache (a proxy, a CDN) keeps a page of
    someone's rooms and private messages and serves it to another person; `no-store` so
    that the browser does not write it to disk either, where "Back" after signing out on a
    shared computer would show it again. A chat page is live anyway (its socket catches up
    on every load), so nothing is lost by fetching it again. `Vary: Cookie` says the page
    depends on who asks, for any cache that ignores the rest.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler | AsyncHandler) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        user = getattr(request, "user", None)
        if not response.has_header("Cache-Control") and user and user.is_authenticated:
            keep_private(response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = await cast(AsyncHandler, self.get_response)(request)
        if not response.has_header("Cache-Control") and await signed_in(request):
            keep_private(response)
        return response


def keep_private(response: HttpResponseBase) -> None:
    patch_cache_control(response, private=True, no_store=True)
    patch_vary_headers(response, ("Cookie",))


async def signed_in(request: HttpRequest) -> bool:
    """Whether `request` comes from a signed-in user, without a database query on the loop.

    The view has usually looked the user up already (request.user, in its thread); if
    nothing did, request.user would look them up here, on the loop, which Django refuses:
    request.auser() does it asynchronously instead.
    """
    user = getattr(request, "user", None)
    if user is None:  # no AuthenticationMiddleware before us (or it was not reached)
        return False
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        user = await request.auser()
    return bool(user.is_authenticated)
