"""The operator dashboard: server-rendered HTML behind the operator key, with no JavaScript."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from functools import cache
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from budstikke import __version__
from budstikke.api.dashboard_data import load_dashboard
from budstikke.api.login_throttle import client_key
from budstikke.api.services import Services, services_of
from budstikke.dispatch.dispatcher import utc_now

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/dashboard", include_in_schema=False)

SESSION_COOKIE = "budstikke_operator"
# A login lasts this long; changing the operator key ends every login at once.
SESSION_LIFETIME_S = 12 * 3600
# The login form has one short field.
MAX_LOGIN_BODY_BYTES = 4096
REFRESH_S = 30
SECURITY_HEADERS = {
    # No scripts at all; styles are inline in the page.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("budstikke.api", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(template).render(version=__version__, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def session_token(operator_key: str, expires_at: int) -> str:
    """Return a cookie value that proves a login until `expires_at` (Unix seconds).

    The cookie holds an HMAC of the expiry keyed with the operator key, never
    the key itself.
    """
    message = f"budstikke-dashboard:{expires_at}".encode()
    digest = hmac.new(operator_key.encode(), message, hashlib.sha256).hexdigest()
    return f"{expires_at}.{digest}"


def session_is_valid(operator_key: str, token: str, now_s: float) -> bool:
    expires_text, _, _digest = token.partition(".")
    # str.isdigit also accepts digits such as "²" that int() rejects, and a
    # long digit string would exceed int()'s conversion limit.
    if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
        return False
    if int(expires_text) <= now_s:
        return False
    expected = session_token(operator_key, int(expires_text))
    return hmac.compare_digest(expected.encode(), token.encode())


def bearer_credentials(request: Request) -> str | None:
    """Return the token of a `Bearer` Authorization header, or None without one."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def is_operator(request: Request, operator_key: str) -> bool:
    """Return whether the request carries the operator key or a valid login cookie."""
    credentials = bearer_credentials(request)
    if credentials is not None:
        return hmac.compare_digest(credentials.encode(), operator_key.encode())
    token = request.cookies.get(SESSION_COOKIE)
    return token is not None and session_is_valid(operator_key, token, time.time())


def dashboard_off() -> HTMLResponse:
    return render(
        "login.html",
        status_code=403,
        enabled=False,
        error="The dashboard is off because BUDSTIKKE_OPERATOR_KEY is not set. Set it to a "
        "secret of at least 16 characters and restart budstikke.",
    )


@router.get("")
async def show_dashboard(request: Request) -> Response:
    services = services_of(request)
    operator_key = services.settings.operator_key
    if not operator_key:
        return dashboard_off()
    # A bearer key counts against the same limit as the login form, or it
    # would be a way around it.
    offers_key = bearer_credentials(request) is not None
    client = request.client.host if request.client else None
    throttle_key = client_key(client)
    if offers_key and (throttled := throttled_response(services, client, throttle_key)):
        return throttled
    if not is_operator(request, operator_key):
        if offers_key:
            services.login_throttle.record_failure(throttle_key)
        return render("login.html", status_code=401, enabled=True, error=None)
    providers = services.dispatcher.providers if services.dispatcher is not None else {}
    view = await load_dashboard(services.database, providers, utc_now())
    return render(
        "dashboard.html",
        status_code=200 if view.database_ok else 503,
        view=view,
        refresh_s=REFRESH_S,
    )


@router.post("/login")
async def log_in(request: Request) -> Response:
    services = services_of(request)
    operator_key = services.settings.operator_key
    if not operator_key:
        return dashboard_off()
    client = request.client.host if request.client else None
    throttle_key = client_key(client)
    # Checked before the body is read, so a throttled client's key is never compared.
    if throttled := throttled_response(services, client, throttle_key):
        return throttled
    body = await read_form(request)
    # Checked again: requests read concurrently all passed the first check.
    if throttled := throttled_response(services, client, throttle_key):
        return throttled
    offered = body.get("key", [""])[0]
    if not hmac.compare_digest(offered.encode(), operator_key.encode()):
        services.login_throttle.record_failure(throttle_key)
        logger.warning(
            "dashboard login failed",
            extra={"event": "dashboard_login_failed", "reason": "wrong key", "client": client},
        )
        return render(
            "login.html",
            status_code=401,
            enabled=True,
            error="The operator key is not correct.",
        )
    services.login_throttle.record_success(throttle_key)
    expires_at = int(time.time()) + SESSION_LIFETIME_S
    response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        session_token(operator_key, expires_at),
        max_age=SESSION_LIFETIME_S,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    logger.info("dashboard login", extra={"event": "dashboard_login", "client": client})
    return response


def throttled_response(
    services: Services, client: str | None, throttle_key: str
) -> HTMLResponse | None:
    """Return the 429 page when the client sent too many wrong keys, else None."""
    retry_after_s = services.login_throttle.retry_after_s(throttle_key)
    return None if retry_after_s is None else login_throttled(client, retry_after_s)


def login_throttled(client: str | None, retry_after_s: int) -> HTMLResponse:
    logger.warning(
        "dashboard login rejected: too many wrong operator keys",
        extra={
            "event": "dashboard_login_throttled",
            "reason": "too many wrong keys",
            "client": client,
            "retry_after_s": retry_after_s,
        },
    )
    response = render(
        "login.html",
        status_code=429,
        enabled=True,
        error=f"Too many wrong operator keys from this address. Wait {retry_after_s} s, "
        "then log in with the key in BUDSTIKKE_OPERATOR_KEY.",
    )
    response.headers["Retry-After"] = str(retry_after_s)
    return response


@router.post("/logout")
async def log_out() -> Response:
    response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


async def read_form(request: Request) -> dict[str, list[str]]:
    """Parse a small application/x-www-form-urlencoded body; anything else gives no fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY_BYTES:
            return {}
    try:
        return parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=5)
    except ValueError:
        # More fields than a login form has: treat it as no form at all.
        return {}
