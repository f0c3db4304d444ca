"""Error pages in the site's layout; never a stack trace."""

from __future__ import annotations

import json

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from itsm.extensions import db

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Changed meanwhile",
    500: "Something went wrong",
}


def wants_json() -> bool:
    """A script asking for JSON (the board's fetch calls) rather than a browser asking for a page."""
    return request.accept_mimetypes.best in ("application/json", "application/problem+json")


def problem(code: int, message: str, **extra):
    """An RFC 9457 problem document; ``error`` and ``message`` stay for older JSON clients."""
    title = TITLES.get(code, "Error")
    body = {"type": "about:blank", "title": title, "status": code, "detail": message,
            "error": title, "message": message, **extra}
    return current_app.response_class(json.dumps(body), status=code, mimetype="application/problem+json")


def _render(code: int, message: str):
    title = TITLES.get(code, "Error")
    if request.path.startswith(("/healthz", "/readyz")):
        return {"error": title, "message": message}, code
    if wants_json():
        return problem(code, message)
    return render_template("errors/error.html", code=code, title=title, message=message), code


def register(app: Flask) -> None:
    @app.before_request
    def refuse_nul_characters():
        # No form or query value has a use for U+0000, and PostgreSQL cannot store one in text:
        # without this a NUL typed into any field would reach the database and end as a 500.
        for values in (request.args, request.form):
            for key, value in values.items(multi=True):
                if "\x00" in key or "\x00" in value:
                    return _render(400, "The request contained a NUL character, which no field accepts.")
        return None

    @app.errorhandler(CSRFError)
    def csrf_error(err: CSRFError):
        return _render(400, "The form was missing its security token or it expired. "
                            "Go back, reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if err.code in (301, 302, 303, 307, 308):
            return err
        description = err.description if err.code in (400, 404, 403, 409) and err.description else ""
        return _render(err.code or 500, description or _default_message(err.code))

    @app.errorhandler(Exception)
    def unhandled(err: Exception):
        app.logger.exception("Unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _render(500, InternalServerError.description)


def _default_message(code: int | None) -> str:
    return {
        403: "You do not have access to this page.",
        404: "There is nothing at this address.",
        405: "This address does not accept that kind of request.",
    }.get(code or 500, "The request could not be handled.")
