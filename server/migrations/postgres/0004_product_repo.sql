-- A product belongs to one repository, named as tokens name it: `--repo NAME=PATH`'s NAME, or
-- '' for the one served at `/`. A license then never opens a same-named ref of another
-- repository. NULL (every product made before, and one made without a repository) means the
-- only repository served: it opens nothing while several are served.
ALTER TABLE products ADD COLUMN repo TEXT;
