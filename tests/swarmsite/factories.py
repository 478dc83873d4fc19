"""Factories of projects and API keys.

Every factory of the project's models creates through the model's create
service, not `objects.create()`: services keep roll-ups, create digests,
events and the journal consistent, which a bare row would not be.
"""

import factory
from factory.django import DjangoModelFactory

from swarmsite.models import ApiKey, Project
from swarmsite.services import api_key_create, project_create


class ProjectFactory(DjangoModelFactory[Project]):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())

    @classmethod
    def _create(cls, model_class, **kwargs) -> Project:
        return project_create(**kwargs)[0]


class ApiKeyFactory(DjangoModelFactory[ApiKey]):
    """A key of `project`; its secret, never stored, is on `.secret`."""

    class Meta:
        model = ApiKey

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"key-{n}")
    scopes = ("read", "write")

    @classmethod
    def _create(cls, model_class, **kwargs) -> ApiKey:
        key, secret = api_key_create(
            project=kwargs.pop("project"),
            name=kwargs.pop("name"),
            scopes=list(kwargs.pop("scopes")),
            **kwargs,
        )
        key.secret = secret
        return key
