"""``flask users ...``"""

from __future__ import annotations

import click

from itsm.cliparams import Group
from itsm.extensions import db
from itsm.users.service import UserError, create_user

users_cli = Group("users", help="Manage user accounts.")


@users_cli.command("create-admin")
@click.option("--email", required=True, help="The admin's email address (their login).")
@click.option("--name", default="", help="Display name.")
@click.option("--password", help="Password; prompted for (hidden, twice) when not given.")
def create_admin(email: str, name: str, password: str | None) -> None:
    """Create an admin account."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email=email, name=name, password=password, role="admin")
        db.session.commit()
    except UserError as err:
        db.session.rollback()
        raise click.ClickException(str(err)) from None
    click.echo(f"Created admin {user.email}.")
