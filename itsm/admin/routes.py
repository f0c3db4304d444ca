"""Admin pages: users and board columns."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from itsm.admin.forms import ColumnForm, EditUserForm, NewUserForm
from itsm.admin.guard import admin_blueprint, commit_or_flash
from itsm.board import service as columns
from itsm.board.models import BoardColumn, ordered_columns
from itsm.extensions import db
from itsm.mail.outbox import OutboxError
from itsm.users.account_mail import invite_user, send_invitation
from itsm.users.models import User
from itsm.users.service import UserError, create_user, update_user
from itsm.web import ActionForm

bp = admin_blueprint("admin", __name__, "/admin")


@bp.get("/")
def index():
    return redirect(url_for("admin.users"))


@bp.route("/users", methods=["GET", "POST"])
def users():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            if form.password.data:
                user = create_user(email=form.email.data, name=form.name.data, role=form.role.data,
                                   password=form.password.data)
            else:
                user = invite_user(email=form.email.data, name=form.name.data, role=form.role.data,
                                   actor=current_user)
        except (UserError, OutboxError) as err:
            db.session.rollback()
            getattr(form, getattr(err, "field", "email"), form.email).errors.append(str(err))
        else:
            db.session.commit()  # the user and their invitation email, together
            flash(f"User {user.email} created." if form.password.data else
                  f"Invitation sent to {user.email}.", "success")
            return redirect(url_for("admin.users"))
    people = db.session.scalars(db.select(User).order_by(User.active.desc(), User.name, User.email)).all()
    edit_forms = {u.id: EditUserForm(prefix=f"u{u.id}", role=u.role, active=u.active) for u in people}
    return render_template("admin/users.html", form=form, users=people, edit_forms=edit_forms), \
        400 if form.errors else 200


@bp.post("/users/<int:user_id>")
def edit_user(user_id: int):
    user = db.session.get(User, user_id) or abort(404, f"There is no user #{user_id}.")
    form = EditUserForm(prefix=f"u{user.id}")
    if not form.validate_on_submit():
        abort(400, "Choose a valid role.")
    commit_or_flash(lambda: update_user(user, role=form.role.data, active=form.active.data, actor=current_user),
                    f"{user.email} saved.", (UserError,))
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/invite")
def resend_invitation(user_id: int):
    user = db.session.get(User, user_id) or abort(404, f"There is no user #{user_id}.")
    if not ActionForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    commit_or_flash(lambda: send_invitation(user, current_user), f"A new invitation is on its way to {user.email}; "
                    "earlier links still work until one is used.", (UserError,))
    return redirect(url_for("admin.users"))


@bp.route("/columns", methods=["GET", "POST"])
def board_columns():
    form = ColumnForm()
    if form.validate_on_submit():
        try:
            column = columns.create_column(form.name.data, form.is_done_column.data)
        except columns.ColumnError as err:
            db.session.rollback()
            form.name.errors.append(str(err))
        else:
            db.session.commit()
            flash(f"Column {column.name} added.", "success")
            return redirect(url_for("admin.board_columns"))
    cols = ordered_columns()
    edit_forms = {c.id: ColumnForm(prefix=f"c{c.id}", name=c.name, is_done_column=c.is_done_column) for c in cols}
    return render_template("admin/columns.html", form=form, columns=cols, edit_forms=edit_forms,
                           action_form=ActionForm()), 400 if form.errors else 200


def _column_or_404(column_id: int) -> BoardColumn:
    return db.session.get(BoardColumn, column_id) or abort(404, f"There is no column #{column_id}.")


@bp.post("/columns/<int:column_id>")
def edit_column(column_id: int):
    column = _column_or_404(column_id)
    form = ColumnForm(prefix=f"c{column.id}")
    if not form.validate_on_submit():
        flash("Column name: " + "; ".join(form.name.errors or ["invalid"]), "error")
        return redirect(url_for("admin.board_columns"))
    commit_or_flash(lambda: columns.update_column(column, form.name.data, form.is_done_column.data),
                    lambda: f"Column {column.name} saved.", (columns.ColumnError,))
    return redirect(url_for("admin.board_columns"))


@bp.post("/columns/<int:column_id>/left")
def column_left(column_id: int):
    return _shift(column_id, -1)


@bp.post("/columns/<int:column_id>/right")
def column_right(column_id: int):
    return _shift(column_id, 1)


def _shift(column_id: int, step: int):
    column = _column_or_404(column_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    columns.shift_column(column, step)
    db.session.commit()
    return redirect(url_for("admin.board_columns"))


@bp.post("/columns/<int:column_id>/delete")
def delete_column(column_id: int):
    column = _column_or_404(column_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    name = column.name
    commit_or_flash(lambda: columns.delete_column(column), f"Column {name} deleted.", (columns.ColumnError,))
    return redirect(url_for("admin.board_columns"))
