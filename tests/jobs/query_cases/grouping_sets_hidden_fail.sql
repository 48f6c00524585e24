-- fail: single_select
SELECT race, COUNT(*) AS n FROM pums GROUP BY GROUPING SETS ((race), (race, sex))
