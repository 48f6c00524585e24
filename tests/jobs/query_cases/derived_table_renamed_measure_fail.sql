-- fail: measure_outside_aggregate, column: pums.income
SELECT s.r, s.x, COUNT(*) AS n FROM (SELECT race AS r, income AS x FROM pums) AS s GROUP BY s.r, s.x
