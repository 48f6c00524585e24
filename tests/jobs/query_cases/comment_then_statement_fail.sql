-- fail: single_select
SELECT COUNT(*) AS n FROM pums /* hidden */; ATTACH 'x.db' AS x
