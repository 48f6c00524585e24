-- fail: single_select
SELECT race INTO leak FROM pums GROUP BY race
