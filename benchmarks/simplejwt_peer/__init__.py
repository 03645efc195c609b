"""The peer of the benchmark: djangorestframework-simplejwt with refresh-token rotation
and its blacklist, set up the way its documentation describes, under the same server,
database settings and middleware as the example project."""
