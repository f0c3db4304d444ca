"""/admin/holidays: the days business-day rules skip (or move past), kept by admins."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import InputRequired, Length

from itsm.admin.guard import admin_blueprint
from itsm.extensions import db
from itsm.formutil import strip
from itsm.recurring.models import Holiday
from itsm.web import ActionForm

bp = admin_blueprint("holidays", __name__, "/admin/holidays")


class HolidayForm(FlaskForm):
    day = DateField("Date", validators=[InputRequired(message="Enter the holiday's date.")])
    name = StringField("Name", filters=[strip], validators=[Length(max=80)])


@bp.route("", methods=["GET", "POST"])
def index():
    form = HolidayForm()
    if form.validate_on_submit():
        if db.session.scalar(db.select(Holiday.id).where(Holiday.day == form.day.data)) is not None:
            form.day.errors.append(f"{form.day.data:%Y-%m-%d} is already a holiday.")
        else:
            db.session.add(Holiday(day=form.day.data, name=form.name.data or ""))
            db.session.commit()
            flash(f"{form.day.data:%A %Y-%m-%d} added: business-day rules now skip it.", "success")
            return redirect(url_for("holidays.index"))
    days = db.session.scalars(db.select(Holiday).order_by(Holiday.day)).all()
    return render_template("admin/holidays.html", form=form, holidays=days, action_form=ActionForm()), \
        400 if form.errors else 200


@bp.post("/<int:holiday_id>/delete")
def delete(holiday_id: int):
    holiday = db.session.get(Holiday, holiday_id) or abort(404, f"There is no holiday #{holiday_id}.")
    if not ActionForm().validate_on_submit():
        abort(400, "The form was missing its security token. Reload the page and try again.")
    db.session.delete(holiday)
    db.session.commit()
    flash(f"{holiday.day:%Y-%m-%d} is no longer a holiday.", "success")
    return redirect(url_for("holidays.index"))
