-- fail: single_select
CREATE TABLE leak AS SELECT race FROM pums
