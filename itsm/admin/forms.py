from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length

from itsm.formutil import options, strip
from itsm.users.models import MIN_PASSWORD_LENGTH, ROLES

ROLE_CHOICES = options((role, role.capitalize()) for role in ROLES)


class NewUserForm(FlaskForm):
    email = EmailField("Email", filters=[strip], validators=[DataRequired(), Length(max=254),
                                                             Email(message="Enter a valid email address.")])
    name = StringField("Name", filters=[strip], validators=[Length(max=120)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="agent")
    password = PasswordField("Initial password", validators=[
        DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256,
                               message=f"Use at least {MIN_PASSWORD_LENGTH} characters.")])


class EditUserForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    active = BooleanField("Active (can log in)")


class ColumnForm(FlaskForm):
    name = StringField("Name", filters=[strip], validators=[DataRequired(), Length(max=60)])
    is_done_column = BooleanField("Done column (tickets here count as finished)")
