from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts.forms import TrustedUsernameField, TrustedUsernameMixin

User = get_user_model()


class TrustedAdminUserCreationForm(TrustedUsernameMixin, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        field_classes = {"username": TrustedUsernameField}


class TrustedUserChangeForm(TrustedUsernameMixin, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        field_classes = {"username": TrustedUsernameField}


# Staff making or renaming a user get the sign-up's rules on names, and a clear message
# instead of the database refusing a look-alike (accounts/signals.py).
admin.site.unregister(User)


@admin.register(User)
class TrustedNameUserAdmin(UserAdmin):
    add_form = TrustedAdminUserCreationForm
    form = TrustedUserChangeForm
