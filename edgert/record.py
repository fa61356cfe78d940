"""Small immutable records: a namedtuple without importing ``collections`` (about 1.3 ms on
every edgert-oci start)."""


def record(name, fields, defaults=()):
    """Returns a tuple subclass with named, read-only fields (like collections.namedtuple)."""
    fields = tuple(fields.split()) if isinstance(fields, str) else tuple(fields)
    first_default = len(fields) - len(defaults)

    def __new__(cls, *args, **kwargs):
        if len(args) > len(fields):
            raise TypeError("%s takes %d values, got %d" % (name, len(fields), len(args)))
        values = list(args)
        for i in range(len(args), len(fields)):
            field = fields[i]
            if field in kwargs:
                values.append(kwargs.pop(field))
            elif i >= first_default:
                values.append(defaults[i - first_default])
            else:
                raise TypeError("%s is missing %r" % (name, field))
        if kwargs:
            raise TypeError("%s has no field %r" % (name, sorted(kwargs)[0]))
        return tuple.__new__(cls, values)

    def __repr__(self):
        return "%s(%s)" % (name, ", ".join("%s=%r" % pair for pair in zip(fields, self)))

    namespace = {"__slots__": (), "__new__": __new__, "__repr__": __repr__, "_fields": fields}
    for index, field in enumerate(fields):
        namespace[field] = property(lambda self, i=index: tuple.__getitem__(self, i))
    return type(name, (tuple,), namespace)
