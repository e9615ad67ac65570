"""count() of tags whose __hash__ drops the tag from the list being counted."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_hash_callback  # noqa: E402


class Tag:
    def __init__(self, name, owner=None):
        self.name, self.owner = name, owner

    def __hash__(self):
        if self.owner is not None:
            owner, self.owner = self.owner, None
            owner.remove(self)                 # a tag that expires when first looked at
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Tag) and self.name == other.name


tags = [Tag("red"), Tag("green-%d" % 1), Tag("red")]
tags[1].owner = tags
print(uaf_hash_callback.count(tags))
